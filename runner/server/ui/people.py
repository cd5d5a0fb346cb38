"""The dashboard's people and messages pages, and signing in and out.

People are looked up through the subscribers API's operations (runner.server.api
.subscriber_ops): the same view, the same lift of a suppression, the same erasure.
"""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from runner.core.records import Message
from runner.engine.subscribers import normalise_email
from runner.server.api.models import RequestError
from runner.server.api.operations import outbox
from runner.server.api.subscriber_ops import SubscriberOps
from runner.server.ui import session as sessions
from runner.server.ui.base import UiHandlers, back
from runner.server.ui.session import Session
from runner.store.base import ReadTx

MESSAGES_SHOWN = 50
UI_ACTOR = "dashboard"
# The message body, alone in a sandboxed frame: no scripts, no remote loads of any kind.
MESSAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
NOTICES = {
    "unsuppressed": "The suppression was lifted.",
    "erased": "The person was erased; their counts remain in the stats.",
}


class PeoplePages(UiHandlers):
    """GET /ui/people, POST /ui/people/unsuppress, GET/POST /ui/people/erase, messages."""

    def ops(self) -> SubscriberOps:
        """The subscribers API's operations over this app's parts."""
        return SubscriberOps(self.store, self.worker, self.clock)

    async def people(self, request: Request, session: Session) -> Response:
        """Look a person up by email: fields, groups, suppression, queue, messages."""
        email = (request.query_params.get("email") or "").strip()
        person, missing = None, None
        if email:
            try:
                person = await self.ops().show(normalise_email(email), MESSAGES_SHOWN)
            except RequestError as error:
                if error.status != 404:
                    raise
                missing = email
        return self.page(
            request,
            session,
            "people.html",
            title="People",
            email=email,
            person=person,
            missing=missing,
            notice=NOTICES.get(request.query_params.get("notice") or ""),
        )

    async def unsuppress(self, request: Request, session: Session) -> Response:
        """Lift a suppression, recorded with the dashboard as who and the note as why."""
        fields = await self.form(request, session)
        email = normalise_email(fields.get("email", ""))
        await self.ops().unsuppress(email, UI_ACTOR, fields.get("note") or None)
        return back(_person(email), "unsuppressed")

    async def erase_confirm(self, request: Request, session: Session) -> Response:
        """The confirmation step before erasing a person."""
        email = normalise_email(request.query_params.get("email") or "")
        await self.ops().show(email, 0)  # 404 page for an unknown person
        return self.page(request, session, "erase.html", title="Erase a person", email=email)

    async def erase(self, request: Request, session: Session) -> Response:
        """Erase the person once the confirmation box is ticked."""
        fields = await self.form(request, session)
        email = normalise_email(fields.get("email", ""))
        if fields.get("confirm") != "yes":
            message = "tick the confirmation box to erase this person"
            raise RequestError(422, {"error": "not_confirmed", "message": message})
        await self.ops().erase(email)
        return back("/ui/people", "erased")

    async def messages(self, request: Request, session: Session) -> Response:
        """Sent messages, newest first (`?kind=outbox`: the outbox's only)."""
        automation = request.query_params.get("automation") or None
        kind = "outbox" if request.query_params.get("kind") == "outbox" else "sent"

        def read(tx: ReadTx) -> list[Message]:
            if kind == "outbox":
                return outbox(tx, MESSAGES_SHOWN, automation)
            return tx.messages(MESSAGES_SHOWN, automation)

        found = await self.store.read(read)
        return self.page(
            request,
            session,
            "messages.html",
            title="Messages",
            messages=found,
            kind=kind,
            automation=automation or "",
        )

    async def message(self, request: Request, session: Session) -> Response:
        """One message: headers, text version, and its HTML in a sandboxed frame."""
        message_id = request.path_params["id"]
        found = await self.store.read(lambda tx: tx.message(message_id))
        if found is None:
            raise RequestError(404, {"error": "unknown_message", "message": "no such message"})
        events = await self.store.read(lambda tx: tx.message_events(message_id))
        return self.page(
            request, session, "message.html", title=found.subject, m=found, events=events
        )

    async def message_html(self, request: Request, session: Session) -> Response:
        """The rendered HTML alone, under a policy that forbids scripts and remote loads."""
        message_id = request.path_params["id"]
        found = await self.store.read(lambda tx: tx.message(message_id))
        if found is None or found.html is None:
            raise RequestError(404, {"error": "unknown_message", "message": "no HTML body"})
        headers = {
            "Content-Security-Policy": MESSAGE_CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        return Response(found.html, media_type="text/html; charset=utf-8", headers=headers)

    # signing in and out --------------------------------------------------------------

    async def sign_in_form(self, request: Request) -> Response:
        """The sign-in form (an anonymous session carries its CSRF token)."""
        found = self.session(request)
        if found is not None and found.signed_in:
            return RedirectResponse("/ui", status_code=303)
        fresh = None
        if found is None:
            found, fresh = sessions.new_session(self.key, sessions.ANONYMOUS, self._now())
        response = self.page(
            request, found, "sign_in.html", title="Sign in", next=_next(request), failed=False
        )
        if fresh is not None:
            self.set_cookie(request, response, fresh)
        return response

    async def sign_in(self, request: Request) -> Response:
        """Check the API key; a new signed-in session (never the key) in the cookie."""
        found = self.session(request)
        if found is None:
            return RedirectResponse("/ui/sign-in", status_code=303)
        try:
            fields = await self.form(request, found)
        except RequestError:
            return RedirectResponse("/ui/sign-in", status_code=303)
        key = sessions.key_matches(fields.get("api_key", "").strip(), self.settings.api_keys)
        if key is None:
            return self.page(
                request,
                found,
                "sign_in.html",
                401,
                title="Sign in",
                next=fields.get("next", "/ui"),
                failed=True,
            )
        _, value = sessions.new_session(self.key, sessions.fingerprint(key), self._now())
        response = RedirectResponse(_safe_next(fields.get("next")), status_code=303)
        self.set_cookie(request, response, value)
        return response

    async def sign_out(self, request: Request, session: Session) -> Response:
        """End the session (the cookie is cleared)."""
        await self.form(request, session)
        response = RedirectResponse("/ui/sign-in", status_code=303)
        response.delete_cookie(sessions.COOKIE, path="/ui")
        return response


def _person(email: str) -> str:
    return "/ui/people?" + urllib.parse.urlencode({"email": email})


def _next(request: Request) -> str:
    return _safe_next(request.query_params.get("next"))


def _safe_next(target: str | None) -> str:
    """Only a dashboard path: never another site (an open redirect)."""
    if not target or not target.startswith("/ui") or target.startswith("//"):
        return "/ui"
    return target
