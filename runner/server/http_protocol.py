"""uvicorn's httptools protocol with the limits it lacks, and the uvicorn configuration.

uvicorn (read at 0.55, whose httptools protocol this subclasses: tests/test_http_limits.py
notices if a later version moves its parts) bounds neither how long a client may take to
send its request headers nor its body: a connection that opens and sends nothing, or half a
header, or a chunked body that never ends, holds its file descriptor for ever, and a few
hundred of them exhaust the process's open-file limit so that no one else connects.
`limit_concurrency` does not help: it answers 503 only once headers are complete. This
protocol adds, per connection:

- a header timeout from the connection (or the first byte of a keep-alive request) to the
  end of the headers, and a cap on header bytes (408 / 431, then closed);
- a body timeout from the end of the headers to the end of the body (408 if no answer was
  started, else the connection is just closed);
- a connection cap: past it, the connection that has waited longest for a request (idle
  keep-alive or still sending headers) is closed to make room; with none, the newcomer
  gets a 503 and is closed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runner.core.settings import Settings

log = logging.getLogger("postwright.http")

MAX_HEADER_BYTES = 64 * 1024
# File descriptors kept for the store, the provider HTTP clients, git, logs and the watcher.
_RESERVED_FILES = 128
_WARN_EVERY = 60.0
_REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ConnectionLimits:
    """The per-connection bounds, in seconds and counts."""

    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int = MAX_HEADER_BYTES


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header and body timeouts and a connection cap (see above)."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        # Since when this connection waits for a request (None while one is handled): the
        # longest-waiting one is closed first when the cap is reached.
        self.waiting_since: float | None = None
        self._in_headers = False
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.waiting_since = self.loop.time()
        self._in_headers = True
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            _warn("connections", "connection cap reached: new connections are refused (503)")
            self._reply_and_close(503, "too many connections, retry shortly")
            return
        self._arm(self.limits.header_timeout, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.waiting_since = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_headers and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._reply_and_close(431, "request headers too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._deadline is None:  # a keep-alive request: its headers start now
            self._arm(self.limits.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self.waiting_since = None
        self._in_headers = False
        self._header_bytes = 0
        self._arm(self.limits.body_timeout, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.waiting_since = self.loop.time()

    # --- timers -------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        _warn("headers", "closed connections that did not send their headers in time")
        self._reply_and_close(408, "request headers not received in time")

    def _body_late(self) -> None:
        self._deadline = None
        _warn("body", "closed connections that did not send their body in time")
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The handler waiting for the body sees a disconnect; its answer goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
            self._reply_and_close(408, "request body not received in time")
        elif not self.transport.is_closing():
            self.transport.close()

    # --- the cap ------------------------------------------------------------------

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False if none."""
        open_count = sum(1 for c in self.connections if not c.transport.is_closing())
        if open_count <= self.limits.max_connections:
            return True  # earlier victims are still closing: there is room already
        waiting = [
            c
            for c in self.connections
            if c is not self
            and isinstance(c, LimitedHttpToolsProtocol)
            and c.waiting_since is not None
            and not c.transport.is_closing()
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        _warn("evicted", "connection cap reached: closing the connections idle the longest")
        oldest._disarm()
        oldest.transport.close()
        return True

    def _reply_and_close(self, status: int, message: str) -> None:
        if self.transport.is_closing():
            return
        self._disarm()
        body = message.encode("ascii")
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n"
        )
        if status == 503:
            head += "retry-after: 1\r\n"
        self.transport.write(head.encode("ascii") + b"\r\n" + body)
        self.transport.close()


_last_warning: dict[str, float] = {}


def _warn(kind: str, message: str) -> None:
    """Log `message` at most once a minute per kind (an attack would flood the log)."""
    now = time.monotonic()
    if now - _last_warning.get(kind, -_WARN_EVERY) >= _WARN_EVERY:
        _last_warning[kind] = now
        log.warning("%s (at most one such line a minute)", message)


def protocol_class(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits`."""
    return type("PostwrightHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (each connection takes a file
    descriptor: the connection cap, not EMFILE, must be what bounds them); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:  # e.g. above fs.nr_open
            log.warning("could not raise the open-file limit from %d: %s", soft, error)
            return soft
        return wanted
    return soft


def connection_cap(configured: int) -> int:
    """`configured`, lowered to leave file descriptors for everything else."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return configured
    budget = max(soft - _RESERVED_FILES, soft // 2)
    if budget < configured:
        log.warning(
            "at most %d connections (http.max_connections is %d, the open-file limit %d)",
            budget,
            configured,
            soft,
        )
    return min(configured, budget)


def uvicorn_config(
    app: ASGIApp, settings: Settings, *, log_level: str = "info", access_log: bool = False
) -> uvicorn.Config:
    """How `serve` runs `app`: httptools with the limits above, no websockets."""
    http = settings.http
    limits = ConnectionLimits(
        header_timeout=http.header_timeout,
        body_timeout=http.body_timeout,
        max_connections=connection_cap(http.max_connections),
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(limits),
        ws="none",
        log_level=log_level,
        lifespan="on",
        access_log=access_log,
    )
