"""What every handler group shares: the app's parts, authentication, bodies and small helpers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from runner.core.clock import Clock
from runner.core.settings import Settings
from runner.engine.catalog import Catalog, Live
from runner.engine.worker import Worker
from runner.gitops.reload import Reloading
from runner.server import auth
from runner.server.api.models import RequestError
from runner.server.metrics import Metrics
from runner.store.base import Store
from runner.store.errors import StoreUnavailable

log = logging.getLogger("postwright.api")

MAX_BODY = 5 * 1024 * 1024
# Seconds a client is asked to wait after a fault of the database: lock waits are bounded at
# 10 s and a stopped replica is cut off after 5 s, so a retry within a second would mostly
# meet the same fault and add load to a database that is struggling already.
STORE_RETRY_AFTER = 5
MAX_LIST = 1000
_JSON_TYPE = (b"content-type", b"application/json")

Handler = Callable[[Request], Awaitable[Response]]


class Handlers:
    """The parts of one app every handler group works with."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        worker: Worker,
        clock: Clock,
        reloader: Reloading | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.clock = clock
        self.reloader = reloader
        # One Metrics per app, kept on the worker so that every handler group shares it.
        metrics = worker.metrics if isinstance(worker.metrics, Metrics) else Metrics()
        worker.metrics = self.metrics = metrics

    async def body(self, request: Request) -> bytes:
        """The raw body, refused with 413 past 5 MiB before anything is parsed."""
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise RequestError(400, {"error": "bad_request", "message": "bad Content-Length"})
            if int(length) > MAX_BODY:
                raise RequestError(413, too_large())
        received = bytearray()
        try:
            async for chunk in request.stream():
                received += chunk
                if len(received) > MAX_BODY:
                    raise RequestError(413, too_large())
        except ClientDisconnect:
            # The client left, or the server cut a body that took too long
            # (runner.server.http_protocol): nobody reads this answer, but no handler runs on.
            message = "the client disconnected before sending the whole body"
            raise RequestError(400, {"error": "incomplete_body", "message": message}) from None
        return bytes(received)

    async def authenticated_body(self, request: Request) -> bytes:
        """The body of a request that carries an API key or a valid webhook signature."""
        settings = self.settings
        if not settings.auth_required or auth.bearer_ok(
            request.headers.get("authorization"), settings.api_keys
        ):
            return await self.body(request)
        if not settings.event_webhook_secrets or "webhook-signature" not in request.headers:
            raise RequestError(401, unauthorised("a bearer API key is required"))
        raw = await self.body(request)
        try:
            auth.verify_webhook(request.headers, raw, settings.event_webhook_secrets, self.now())
        except auth.AuthError as error:
            raise RequestError(401, unauthorised(str(error))) from None
        return raw

    def require_key(self, request: Request) -> None:
        """Endpoints other than ingestion take only a bearer key."""
        header = request.headers.get("authorization")
        if self.settings.auth_required and not auth.bearer_ok(header, self.settings.api_keys):
            raise RequestError(401, unauthorised("a bearer API key is required"))

    def now(self) -> datetime:
        """The app's clock."""
        return self.clock.now()

    async def live(self, automation_id: str) -> tuple[Catalog, Live]:
        """The applied automation, or 404."""
        catalog = await self.worker.catalog()
        live = catalog.by_id.get(automation_id)
        if live is None:
            message = f"no applied automation {automation_id!r}"
            raise RequestError(404, {"error": "unknown_automation", "message": message})
        return catalog, live


def iso(value: datetime | None) -> str | None:
    """An instant as ISO 8601 with `Z`."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def query_limit(request: Request, default: int) -> int:
    """`?limit=` from 1 to MAX_LIST, else 422."""
    text = request.query_params.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIST:
        message = f"limit must be an integer from 1 to {MAX_LIST}"
        raise RequestError(422, {"error": "invalid_query", "field": "limit", "message": message})
    return int(text)


def store_unavailable(method: str, route: str, error: StoreUnavailable) -> dict[str, Any]:
    """The 503 answer to a request the database failed (a lock or statement timeout, a lost
    session, a full disk), logged as one line: the request's step was rolled back whole."""
    log.warning("%s %s answered 503: %s", method, route, error)
    message = (
        "the database could not complete this request (a lock or statement timed out, the "
        "connection was lost, or the disk is full); what it was writing was rolled back, so "
        f"repeating the request is safe: retry after {STORE_RETRY_AFTER} s"
    )
    return {"error": "store_unavailable", "message": message}


def too_large() -> dict[str, Any]:
    """The 413 answer."""
    return {"error": "too_large", "field": "(body)", "message": f"body over {MAX_BODY} bytes"}


def unauthorised(message: str) -> dict[str, Any]:
    """The 401 answer."""
    return {"error": "unauthorized", "message": message}


# Built once: json.dumps with options builds an encoder per call (every ingest answer).
_ANSWER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def json_bytes(payload: dict[str, Any]) -> bytes:
    """`payload` as JSONResponse renders it."""
    return _ANSWER.encode(payload).encode("utf-8")


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer with `payload` through bare ASGI messages (no response class: hot paths)."""
    body = json_bytes(payload)
    start = [(b"content-length", str(len(body)).encode()), _JSON_TYPE, *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def guard(handler: Handler) -> Handler:
    """Turn a RequestError raised by `handler` into its JSON answer."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as error:
            return JSONResponse(error.body, status_code=error.status, headers=_headers(error))

    return guarded


def _headers(error: RequestError) -> dict[str, str] | None:
    if error.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if error.status == 503:  # the engine is catching up: worth another try in a moment
        return {"Retry-After": "1"}
    return None
