"""A fake Mailgun Messages API on a real socket (127.0.0.1), for contract tests.

Implements `POST /v3/{domain}/messages` as documented: HTTP Basic `api:KEY` (401
"Forbidden" otherwise), a multipart/form-data body (400 otherwise), required `from`, `to`,
`subject` and one of `text`/`html`, `o:`/`h:`/`v:` options under 16 KB, and
`200 {"id": "<...@domain>", "message": "Queued. Thank you."}`. Tests can script the next
answers (429 with Retry-After, 5xx, anything) and hold a request to make it slow.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from types import TracebackType
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes import serve

OPTIONS_LIMIT = 16 * 1024  # bytes of o:, h:, v:, t: fields together
HOLD_LIMIT = 10.0  # seconds a held request waits at most for its release


@dataclass
class Reply:
    """A scripted answer."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hold:
    """A request kept waiting: `arrived` is set when it reached the server, `release` frees it,
    `finished` is set once it has been processed (its answer decided)."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str]] | None:
    """The (name, value) fields of a multipart/form-data body, or None when malformed."""
    parsed = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    if not parsed.is_multipart():
        return None
    fields: list[tuple[str, str]] = []
    for part in parsed.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            return None
        fields.append((name, payload.decode("utf-8")))
    return fields


class ScriptedFake:
    """A fake API whose next answers tests may script (`reply_next`) or hold (`slow_next`);
    use as a context manager, then `base_url` is where it listens. Subclasses answer every
    POST in `handle`."""

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._holds: deque[Hold] = deque()
        self._all_holds: list[Hold] = []
        self._stack = ExitStack()
        self.base_url = ""

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The answer to one POST (runs on a server thread)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.base_url = self._stack.enter_context(serve(asgi_app(self.handle)))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for hold in self._all_holds:
            hold.release.set()
        self._stack.close()

    def reply_next(self, reply: Reply, times: int = 1) -> None:
        """Answer the next `times` requests with `reply` (before any checks)."""
        with self._lock:
            self._script.extend([reply] * times)

    def slow_next(self) -> Hold:
        """The next request waits for `hold.release` (before it is processed normally)."""
        hold = Hold()
        with self._lock:
            self._holds.append(hold)
            self._all_holds.append(hold)
        return hold


class FakeMailgun(ScriptedFake):
    """The fake Mailgun server."""

    def __init__(self, api_key: str = "key-test", domain: str = "mg.example.test") -> None:
        super().__init__()
        self.api_key = api_key
        self.domain = domain
        self.accepted: list[dict[str, list[str]]] = []  # fields of every accepted message

    def rate_limit_next(self, retry_after: int = 7) -> None:
        """The next request gets 429; Mailgun documents no header, Retry-After is assumed."""
        body = {"message": "Too many requests"}
        self.reply_next(Reply(429, body, {"Retry-After": str(retry_after)}))

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The answer to one POST (runs on a server thread)."""
        with self._lock:
            self.requests += 1
            hold = self._holds.popleft() if self._holds else None
            scripted = self._script.popleft() if self._script else None
        if hold is not None:
            hold.arrived.set()
            hold.release.wait(HOLD_LIMIT)
        try:
            return scripted if scripted is not None else self._check(path, headers, body)
        finally:
            if hold is not None:
                hold.finished.set()

    def _check(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        if not self._authorised(headers.get("authorization", "")):
            return Reply(401, b"Forbidden", {"Content-Type": "text/plain"})
        if path != f"/v3/{self.domain}/messages":
            return Reply(404, {"message": "Domain not found: " + path})
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return Reply(400, {"message": "Content-Type must be multipart/form-data"})
        fields = parse_multipart(content_type, body)
        if fields is None:
            return Reply(400, {"message": "malformed multipart body"})
        return self._accept(fields)

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        return decoded == f"api:{self.api_key}"

    def _accept(self, fields: list[tuple[str, str]]) -> Reply:
        values: dict[str, list[str]] = {}
        for name, value in fields:
            values.setdefault(name, []).append(value)
        for name in ("from", "to", "subject"):
            if not values.get(name):
                return Reply(400, {"message": f"'{name}' parameter is missing"})
        if not values.get("text") and not values.get("html"):
            return Reply(400, {"message": "Need at least one of 'text' or 'html' parameters"})
        options = sum(
            len(n.encode()) + len(v.encode())
            for n, v in fields
            if n[:2] in ("o:", "h:", "v:", "t:")
        )
        if options > OPTIONS_LIMIT:
            return Reply(400, {"message": "Send options (o:, h:, v:, t:) exceed 16KB"})
        ident = f"<{secrets.token_hex(8)}.{secrets.token_hex(4)}@{self.domain}>"
        with self._lock:
            self.accepted.append(values)
        return Reply(200, {"id": ident, "message": "Queued. Thank you."})


Handle = Callable[[str, Mapping[str, str], bytes], Reply]


def asgi_app(handle: Handle) -> Starlette:
    """An app answering every POST with `handle(path, lower-cased headers, body)`.

    `handle` is synchronous and may block (held requests), so it runs in a worker thread
    and other requests keep being served meanwhile.
    """

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        headers = {name.lower(): value for name, value in request.headers.items()}
        reply = await asyncio.to_thread(handle, request.url.path, headers, body)
        return to_response(reply)

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])


def to_response(reply: Reply) -> Response:
    """`reply` as a response: bytes as text/plain, anything else as JSON."""
    if isinstance(reply.body, bytes):
        return Response(reply.body, reply.status, reply.headers, media_type="text/plain")
    content = json.dumps(reply.body).encode() if reply.body is not None else b""
    return Response(content, reply.status, reply.headers, media_type="application/json")
