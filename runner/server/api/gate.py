"""The gate in front of every handler: requests refused before any handler runs.

- NUL in the path or query string: 422 (no store can keep it, PostgreSQL text least).
- Without API keys (loopback mode), what only a browser tricked by another site sends:
  a `Host` that is neither loopback nor configured (DNS rebinding) is 400, and a foreign
  `Origin` on a state-changing request (CSRF) is 403. Probes (`/healthz`, `/readyz`,
  `/metrics`) may come with any Host; the one-click unsubscribe `POST /u/{token}` with
  any Origin (mail clients post it).
- A body sent to a JSON endpoint (`/v1/...`) without `Content-Type: application/json`
  is 415; webhooks may also be form-encoded (Mailgun).
- Load shedding: `POST /v1/events` answers 429 with `Retry-After` while the engine's
  backlog or the requests in flight are at their bounds, instead of queueing without end.

Every check reads the ASGI scope only, so the ingest hot path pays a few comparisons.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from runner.core.settings import Settings
from runner.engine.backlog import Backlog
from runner.server.api.base import send_json
from runner.server.metrics import Metrics

INGEST_PATH = "/v1/events"
RETRY_AFTER_SECONDS = 1
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORMS = (b"application/x-www-form-urlencoded", b"multipart/form-data")
_HOSTS_REMEMBERED = 256  # Host headers whose verdict is kept (clients use one or two)


class Gate:
    """ASGI middleware holding the checks above and the count of requests in flight."""

    def __init__(
        self, app: ASGIApp, settings: Settings, backlog: Backlog, metrics: Metrics
    ) -> None:
        self.app = app
        self.loopback_mode = not settings.auth_required
        self.hosts = settings.allowed_hosts
        self.max_in_flight = settings.http.max_in_flight
        self.max_backlog = settings.http.max_backlog
        self.backlog = backlog
        self.metrics = metrics
        self.in_flight = 0
        # Host header -> trusted: the settings do not change while serving, and parsing an
        # IP address for the loopback test costs more than the rest of the gate.
        self._hosts: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, payload = refusal
            self.metrics.requests_refused.labels(payload["reason"]).inc()
            retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())] if status == 429 else []
            await send_json(send, status, payload, retry)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _refusal(self, scope: Scope) -> tuple[int, dict[str, Any]] | None:
        path: str = scope["path"]
        if "\x00" in path or b"%00" in scope["query_string"]:
            where = "(path)" if "\x00" in path else "(query)"
            message = "the URL contains a NUL character (%00)"
            return 422, _answer("invalid_request", "nul", message, field=where)
        headers = _Headers(scope["headers"])
        if self.loopback_mode and path not in _PROBES:
            refusal = self._browser_refusal(path, scope["method"], headers)
            if refusal is not None:
                return refusal
        if headers.has_body and path.startswith("/v1/") and not is_json(headers.content_type):
            if not (path.endswith("/webhook") and is_form(headers.content_type)):
                return 415, _not_json(headers.content_type)
        if path == INGEST_PATH and scope["method"] == "POST":
            return self._shed()
        return None

    def _browser_refusal(
        self, path: str, method: str, headers: _Headers
    ) -> tuple[int, dict[str, Any]] | None:
        if headers.host is not None and not self._trusted_host(headers.host):
            return 400, _foreign_host(headers.host)
        origin = headers.origin
        if origin is None or method not in _STATE_CHANGING or path.startswith("/u/"):
            return None
        return None if self._trusted(origin_host(origin)) else (403, _foreign_origin(origin))

    def _trusted_host(self, header: bytes) -> bool:
        verdict = self._hosts.get(header)
        if verdict is None:
            if len(self._hosts) >= _HOSTS_REMEMBERED:  # bounded whatever clients send
                self._hosts.clear()
            verdict = self._hosts[header] = self._trusted(host_name(header))
        return verdict

    def _trusted(self, host: str | None) -> bool:
        return host is not None and (host in self.hosts or is_loopback_name(host))

    def _shed(self) -> tuple[int, dict[str, Any]] | None:
        if self.backlog.count >= self.max_backlog:
            message = (
                f"{self.backlog.count} received events wait for processing (the bound is "
                f"{self.max_backlog}); retry after {RETRY_AFTER_SECONDS} s"
            )
            return 429, _answer("overloaded", "backlog", message)
        if self.in_flight >= self.max_in_flight:
            message = (
                f"{self.in_flight} requests are being handled (the bound is "
                f"{self.max_in_flight}); retry after {RETRY_AFTER_SECONDS} s"
            )
            return 429, _answer("overloaded", "in_flight", message)
        return None


class _Headers:
    """The request headers the gate reads, in one pass over the scope's list."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.host: bytes | None = None
        self.origin: bytes | None = None
        self.content_type: bytes | None = None
        self.has_body = False
        for name, value in raw:
            if name == b"host":
                self.host = value
            elif name == b"origin":
                self.origin = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                self.has_body = value.strip(b"0 ") != b""
            elif name == b"transfer-encoding":
                self.has_body = True


def host_name(header: bytes) -> str | None:
    """The host of a `Host` header without its port, lower-cased (`[::1]` keeps brackets)."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1] if end > 0 else None
    return text.partition(":")[0].rstrip(".") or None


def origin_host(header: bytes) -> str | None:
    """The host of an `Origin` header (`null` and malformed origins have none)."""
    scheme, separator, rest = header.decode("latin-1").strip().partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return None
    return host_name(rest.encode("latin-1"))


def is_loopback_name(host: str) -> bool:
    """`localhost`, `*.localhost` (RFC 6761 keeps them on this machine) or a loopback IP."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_json(content_type: bytes | str | None) -> bool:
    """`application/json` or `application/<something>+json`, any parameters."""
    media = _media_type(content_type)
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def is_form(content_type: bytes | str | None) -> bool:
    """A form encoding, as some providers post their webhooks."""
    return _media_type(content_type) in _FORMS


def _media_type(content_type: bytes | str | None) -> bytes:
    if content_type is None:
        return b""
    if isinstance(content_type, str):
        content_type = content_type.encode("latin-1", "replace")
    return content_type.partition(b";")[0].strip().lower()


def _answer(error: str, reason: str, message: str, **extra: str) -> dict[str, Any]:
    return {"error": error, "reason": reason, **extra, "message": message}


def _shown(header: bytes) -> str:
    return repr(header.decode("latin-1")[:100])


def _foreign_host(host: bytes) -> dict[str, Any]:
    message = (
        f"Host {_shown(host)} is not served: without API keys this runner answers only "
        "loopback names, the host of public_url and allowed_hosts (POSTWRIGHT_ALLOWED_HOSTS), "
        "so a web page cannot reach it through a name of its own (DNS rebinding); add the "
        "name to allowed_hosts if you reach the runner through it"
    )
    return _answer("host_not_allowed", "host", message, field="Host")


def _foreign_origin(origin: bytes) -> dict[str, Any]:
    message = (
        f"Origin {_shown(origin)} may not change this runner: without API keys only pages "
        "of loopback names, public_url's host and allowed_hosts may post to it (a page of "
        "another site posting here is cross-site request forgery)"
    )
    return _answer("origin_not_allowed", "origin", message, field="Origin")


def _not_json(content_type: bytes | None) -> dict[str, Any]:
    given = "none" if content_type is None else _shown(content_type)
    message = f"send the body as JSON with Content-Type: application/json (got {given})"
    return _answer("unsupported_media_type", "content_type", message, field="Content-Type")
