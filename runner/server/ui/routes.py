"""The dashboard's routes: every page behind the session check, and the stylesheet."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from runner.server.ui import highlight
from runner.server.ui.automations import AutomationPages
from runner.server.ui.people import PeoplePages

# One stylesheet: ours, then the highlighted files' token colours generated from Pygments.
_CSS = (
    resources.files(__package__).joinpath("static/style.css").read_bytes()
    + b"\n/* Token colours of the applied files (Pygments' "
    + highlight.STYLE.encode()
    + b") */\n"
    + highlight.stylesheet().encode()
    + b"\n"
)


async def _stylesheet(request: Request) -> Response:
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(_CSS, media_type="text/css; charset=utf-8", headers=headers)


async def _slash(request: Request) -> Response:
    return RedirectResponse("/ui", status_code=308)


def ui_routes(automations: AutomationPages, people: PeoplePages) -> list[BaseRoute]:
    """The dashboard's routes (every page behind the session check of `view`)."""
    a, p = automations, people
    send = "/ui/automations/{id}/pending/{send_id}"
    return [
        Route("/ui", a.view(a.index), methods=["GET"]),
        Route("/ui/", _slash, methods=["GET"]),
        Route("/ui/static/style.css", _stylesheet, methods=["GET"]),
        Route("/ui/automations/{id}", a.view(a.automation), methods=["GET"]),
        Route(f"{send}/send-now", a.view(a.send_now), methods=["POST"]),
        Route(f"{send}/remove", a.view(a.remove), methods=["POST"]),
        Route("/ui/people", p.view(p.people), methods=["GET"]),
        Route("/ui/people/unsuppress", p.view(p.unsuppress), methods=["POST"]),
        Route("/ui/people/erase", p.view(p.erase_confirm), methods=["GET"]),
        Route("/ui/people/erase", p.view(p.erase), methods=["POST"]),
        Route("/ui/messages", p.view(p.messages), methods=["GET"]),
        Route("/ui/messages/{id}", p.view(p.message), methods=["GET"]),
        Route("/ui/messages/{id}/html", p.view(p.message_html), methods=["GET"]),
        Route("/ui/sign-in", p.sign_in_form, methods=["GET"]),
        Route("/ui/sign-in", p.sign_in, methods=["POST"]),
        Route("/ui/sign-out", p.view(p.sign_out), methods=["POST"]),
    ]
