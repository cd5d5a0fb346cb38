"""A fake SendGrid v3 Mail Send API (`POST /v3/mail/send`) for contract tests.

It checks the bearer key, the JSON headers and the documented body rules, answers 202 with
an `X-Message-Id` header (and the `X-RateLimit-*` headers on every answer), and records
accepted messages. Switches: `status` (answer 429 with `X-RateLimit-Reset`, or 5xx) and
`delay` (slow answers, bounded).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import bounded

MAX_BODY = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_CATEGORIES = 10
# Headers SendGrid sets itself and refuses in `headers`.
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    }
)


@dataclass
class FakeSendgrid:
    """The fake's state; `app()` is the ASGI app to `serve`."""

    api_key: str = "SG.fake-key"
    accepted: list[dict[str, Any]] = field(default_factory=list)  # body + "x_message_id"
    requests: int = 0
    status: int | None = None  # 429, 500 or 503: every request is answered with it
    delay: float = 0.0  # seconds before answering (bounded by tests.fakes.MAX_DELAY)
    reset_at: int | None = None  # X-RateLimit-Reset (epoch seconds); default now + 60
    limit: int = 600

    def app(self) -> Starlette:
        """Starlette app with the Mail Send endpoint."""
        return Starlette(routes=[Route("/v3/mail/send", self._send, methods=["POST"])])

    async def _send(self, request: Request) -> Response:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(bounded(self.delay))
        authorization = request.headers.get("authorization")
        if authorization is None:
            return self._error(401, "authorization required")
        if authorization != f"Bearer {self.api_key}":
            return self._error(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._error(415, "Content-Type should be application/json.")
        accept = request.headers.get("accept", "")
        if "application/json" not in accept and "*/*" not in accept:
            return self._error(406, "The Accept header must allow application/json.")
        if self.status is not None:
            return self._error(self.status, "rate limit exceeded" if self.status == 429 else "")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return self._error(
                413, "The JSON payload you have included in your request is too large."
            )
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return self._error(400, "Bad Request", field_name=None)
        problem = _problem(body)
        if problem is not None:
            return self._error(400, problem[1], field_name=problem[0])
        message_id = secrets.token_urlsafe(16)[:22]
        self.accepted.append({**body, "x_message_id": message_id})
        return Response(status_code=202, headers={**self._limits(), "X-Message-Id": message_id})

    def _limits(self) -> dict[str, str]:
        reset = self.reset_at if self.reset_at is not None else int(time.time()) + 60
        remaining = 0 if self.status == 429 else self.limit - 1
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def _error(self, status: int, message: str, *, field_name: str | None = None) -> JSONResponse:
        body = {
            "errors": [{"message": message or "Internal error", "field": field_name, "help": None}]
        }
        return JSONResponse(body, status_code=status, headers=self._limits())


def _problem(body: Any) -> tuple[str | None, str] | None:
    """(field, message) of the first rule the body breaks."""
    if not isinstance(body, dict):
        return None, "The request body must be a JSON object."
    people = body.get("personalizations")
    if not isinstance(people, list) or not 1 <= len(people) <= MAX_PERSONALIZATIONS:
        return "personalizations", "The personalizations field is required and must have 1-1000."
    seen: set[str] = set()
    for person in people:
        problem = _personalization(person, seen)
        if problem is not None:
            return problem
    if not _is_address(body.get("from")):
        return "from.email", "The from object must be provided and have an email address."
    if "reply_to" in body and not _is_address(body["reply_to"]):
        return "reply_to.email", "The reply_to email does not contain a valid address."
    if not (isinstance(body.get("subject"), str) and body["subject"]) and not all(
        isinstance(p.get("subject"), str) for p in people
    ):
        return "subject", "The subject is required."
    problem = _content(body.get("content"))
    if problem is not None:
        return problem
    headers = body.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return "headers", "Headers must map names to strings."
    if any(name.lower() in RESERVED_HEADERS for name in headers):
        return "headers", "Reserved headers cannot be set in headers."
    categories = body.get("categories", [])
    if (
        not isinstance(categories, list)
        or len(categories) > MAX_CATEGORIES
        or len(set(categories)) != len(categories)
    ):
        return "categories", "At most 10 unique categories."
    return None


def _personalization(person: Any, seen: set[str]) -> tuple[str | None, str] | None:
    if not isinstance(person, dict):
        return "personalizations", "Each personalization must be an object."
    to = person.get("to")
    if not isinstance(to, list) or not to or not all(_is_address(a) for a in to):
        return "personalizations.0.to", "The to array is required with valid email addresses."
    for recipient in to:
        email = recipient["email"].lower()
        if email in seen:
            return "personalizations.0.to", "Each email address must be unique."
        seen.add(email)
    args = person.get("custom_args", {})
    if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
        return "personalizations.0.custom_args", "custom_args values must be strings."
    return None


def _content(content: Any) -> tuple[str | None, str] | None:
    if not isinstance(content, list) or not content:
        return "content", "Unless a valid template_id is provided, content is required."
    types: list[str] = []
    for part in content:
        if not (isinstance(part, dict) and part.get("type") and part.get("value")):
            return "content", "Each content part needs a type and a non-empty value."
        types.append(part["type"])
    if "text/plain" in types and types[0] != "text/plain":
        return "content.0.type", "The text/plain content type must be first."
    return None


def _is_address(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("email"), str) and "@" in value["email"]
