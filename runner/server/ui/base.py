"""What every dashboard page shares: templates, the session cookie, sign-in redirects,
CSRF-checked forms and the security headers of every answer."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from runner.core.weblinks import commit_url
from runner.server.api.base import Handlers
from runner.server.api.models import RequestError
from runner.server.ui import session as sessions
from runner.templating.pages import PageTemplates

MAX_FORM = 64 * 1024
# Pages load only our own stylesheet and inline SVG; frames only our own message route.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

Page = Callable[[Request, sessions.Session], Awaitable[Response]]


NONE = "\u2013"  # an en dash: no value


def _percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f} %"


def _when(value: str | datetime | None) -> str:
    if value is None:
        return NONE
    text = value.isoformat() if isinstance(value, datetime) else value
    return text.replace("T", " ").replace("+00:00", "Z")[:19] + (" UTC" if text else "")


def commit_link(web_url: str | None, sha: str | None) -> Markup:
    """A commit's short id, linked to its page in the repository when a web URL is set."""
    if not sha:
        return Markup(NONE)
    short = Markup("<code>%s</code>") % sha[:7]
    url = commit_url(web_url, sha)
    if url is None:
        return short
    # An outside page: it gets neither a handle on this window nor the dashboard's address.
    return Markup('<a class="commit" href="{}" rel="noopener noreferrer" title="{}">{}</a>').format(
        url, f"Commit {sha} in the repository", short
    )


TEMPLATES = PageTemplates("runner.server.ui", "templates", {"percent": _percent, "when": _when})


class UiHandlers(Handlers):
    """Dashboard handlers over the app's parts."""

    @property
    def key(self) -> bytes:
        """The session and CSRF signing key."""
        return sessions.derive_key(self.worker.ctx.unsubscribe_key)

    def session(self, request: Request) -> sessions.Session | None:
        """The visitor's valid session, if any."""
        value = request.cookies.get(sessions.COOKIE)
        keys = self.settings.api_keys
        return sessions.read_session(self.key, value, self.now().timestamp(), keys)

    def page(
        self,
        request: Request,
        session: sessions.Session,
        template: str,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page rendered from `template`, with the session's CSRF token for its forms."""
        body = TEMPLATES.render(
            template,
            csrf=sessions.csrf_token(self.key, session),
            signed_in=session.signed_in,
            path=request.url.path,
            commit=partial(commit_link, self.settings.repository_web_url),
            **context,
        )
        return HTMLResponse(body, status_code=status, headers=_HEADERS)

    def set_cookie(self, request: Request, response: Response, value: str) -> None:
        """Set the session cookie: HttpOnly, SameSite=Strict, Secure over https."""
        forwarded = request.headers.get("x-forwarded-proto", "").lower() == "https"
        response.set_cookie(
            sessions.COOKIE,
            value,
            max_age=sessions.LIFETIME_SECONDS,
            path="/ui",
            secure=request.url.scheme == "https" or forwarded,
            httponly=True,
            samesite="strict",
        )

    def view(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """A page for signed-in visitors (anyone in loopback mode), errors as pages."""

        async def guarded(request: Request) -> Response:
            found = self.session(request)
            if self.settings.auth_required and (found is None or not found.signed_in):
                target = urllib.parse.quote(request.url.path, safe="/")
                return RedirectResponse(f"/ui/sign-in?next={target}", status_code=303)
            fresh = None
            if found is None:  # loopback mode: an anonymous session carries the CSRF token
                found, fresh = sessions.new_session(self.key, sessions.ANONYMOUS, self._now())
            try:
                response = await handler(request, found)
            except RequestError as error:
                message = str(error.body.get("message") or error.body.get("error"))
                response = self.page(
                    request, found, "error.html", error.status, message=message, title="Error"
                )
            if fresh is not None:
                self.set_cookie(request, response, fresh)
            return response

        return guarded

    def _now(self) -> float:
        return self.now().timestamp()

    async def form(self, request: Request, session: sessions.Session) -> dict[str, str]:
        """The posted form (URL-encoded, capped), refused with 403 without this session's
        CSRF token."""
        raw = await self.body(request)
        if len(raw) > MAX_FORM:
            raise RequestError(413, {"error": "too_large", "message": "the form is too large"})
        fields = {
            name: values[-1]
            for name, values in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()
        }
        if not sessions.csrf_ok(self.key, session, fields.get("csrf")):
            message = "this form expired or came from another site: reload the page and retry"
            raise RequestError(403, {"error": "csrf", "message": message})
        return fields


def back(location: str, notice: str) -> RedirectResponse:
    """After a form: back to a page, with a notice it shows (post/redirect/get)."""
    joiner = "&" if "?" in location else "?"
    query = urllib.parse.urlencode({"notice": notice})
    return RedirectResponse(f"{location}{joiner}{query}", status_code=303)
