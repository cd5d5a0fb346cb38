"""Handlers of the subscribers API: list, show, upsert, unsuppress and erase
(docs/subscribers.md); the operations themselves are runner.server.api.subscriber_ops."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runner.core.records import SubscriberQuery
from runner.server.api.base import Handlers, query_limit
from runner.server.api.models import (
    RequestError,
    SubscriberPut,
    UnsuppressBody,
    invalid,
    parse_json,
)
from runner.server.api.subscriber_ops import MESSAGES_SHOWN, SubscriberOps, email_of
from runner.server.api.subscriber_views import after_cursor

PREFIX = "/v1/subscribers/"
UNSUPPRESS = "/unsuppress"
DEFAULT_PAGE = 100
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_API_ACTOR = "api"


class SubscribersApi(Handlers):
    """GET/PUT/DELETE /v1/subscribers/{email}, GET /v1/subscribers, POST .../unsuppress."""

    def ops(self) -> SubscriberOps:
        """The operations over this app's store, worker and clock."""
        return SubscriberOps(self.store, self.worker, self.clock)

    async def list(self, request: Request) -> Response:
        """GET /v1/subscribers (?suppressed, ?group, ?limit, ?cursor), by creation."""
        self.require_key(request)
        params = request.query_params
        cursor = params.get("cursor")
        suppressed, reason = suppressed_filter(params.get("suppressed"))
        query = SubscriberQuery(
            after_id=0 if not cursor else after_cursor(cursor),
            limit=query_limit(request, DEFAULT_PAGE),
            suppressed=suppressed,
            reason=reason,
            group=params.get("group") or None,
        )
        found, following = await self.ops().page(query)
        return JSONResponse({"subscribers": found, "next_cursor": following})

    async def show(self, request: Request) -> Response:
        """GET /v1/subscribers/{email} (?messages=20: how many recent messages)."""
        self.require_key(request)
        email = email_of(path_email(request))
        messages = _count(request.query_params.get("messages"))
        return JSONResponse(await self.ops().show(email, messages))

    async def put(self, request: Request) -> Response:
        """PUT /v1/subscribers/{email}: upsert like an event; 201 when it created them."""
        self.require_key(request)
        raw = path_email(request)
        value = _json_or_empty(await self.body(request))
        if isinstance(value, dict):  # the path names the subscriber when the body does not
            value = {**value, "email": value.get("email") or raw}
        try:
            body = SubscriberPut.model_validate(value)
        except ValidationError as error:
            raise invalid(error, "invalid_subscriber") from None
        email = email_of(raw)
        if body.email != email:
            message = f"the body names {body.email}, the path {email}"
            raise RequestError(
                422, {"error": "invalid_subscriber", "field": "email", "message": message}
            )
        done = await self.ops().upsert(email, body.fields, body.groups)
        if done.view is None:
            accepted = {"email": email, "stored": True, "processed": False}
            return JSONResponse(accepted, status_code=202)
        return JSONResponse(done.view, status_code=201 if done.created else 200)

    async def unsuppress(self, request: Request) -> Response:
        """POST /v1/subscribers/{email}/unsuppress (`{"by", "note"}`, both optional)."""
        self.require_key(request)
        email = email_of(path_email(request, UNSUPPRESS))
        value = _json_or_empty(await self.body(request))
        try:
            body = UnsuppressBody.model_validate(value)
        except ValidationError as error:
            raise invalid(error, "invalid_unsuppress") from None
        return JSONResponse(await self.ops().unsuppress(email, body.by or _API_ACTOR, body.note))

    async def delete(self, request: Request) -> Response:
        """DELETE /v1/subscribers/{email}: erase the person, keeping every count."""
        self.require_key(request)
        email = email_of(path_email(request))
        return JSONResponse(await self.ops().erase(email))


def path_email(request: Request, suffix: str = "") -> str:
    """The address in the path, decoded once from the raw path: `%40`, `%2B` and even `%2F`
    work, and `+` stays a plus (paths are not form-encoded)."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(PREFIX.encode()):
        text = raw.decode("latin-1")[len(PREFIX) :]
        if suffix and text.endswith(suffix):
            text = text[: -len(suffix)]
        try:
            return unquote(text, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            message = "the address in the path is not percent-encoded UTF-8"
            error = {"error": "invalid_email", "field": "email", "message": message}
            raise RequestError(422, error) from None
    found: Any = request.path_params.get("email", "")
    return str(found)


def _json_or_empty(raw: bytes) -> Any:
    """A JSON body; no body at all reads as `{}` (`curl -X PUT` with nothing to set)."""
    return parse_json(raw) if raw.strip() else {}


def suppressed_filter(text: str | None) -> tuple[bool | None, str | None]:
    """`?suppressed=`: true / false, or a reason (bounced, complained, unsubscribed)."""
    if text is None or text == "":
        return None, None
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True, None
    if lowered in _FALSE:
        return False, None
    if not lowered.replace("_", "").isalpha():
        message = "suppressed must be true, false or a reason such as bounced"
        raise RequestError(
            422, {"error": "invalid_query", "field": "suppressed", "message": message}
        )
    return True, lowered


def _count(text: str | None) -> int:
    if text is None:
        return MESSAGES_SHOWN
    if not text.isdigit() or not 0 <= int(text) <= 1000:
        message = "messages must be an integer from 0 to 1000"
        raise RequestError(422, {"error": "invalid_query", "field": "messages", "message": message})
    return int(text)
