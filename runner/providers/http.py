"""The HTTP side shared by every provider adapter: one pooled client, and the single place
where responses and transport errors become `ProviderError`s (the retry policy reads flags).

Secrets never reach an error message: only the status, the provider's own message from the
response body, and the exception class name are used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from runner.providers.base import ProviderError

USER_AGENT = "postwright/0.1"
MAX_MESSAGE = 500  # characters of a provider's message kept in an error
# X-RateLimit-Reset is epoch seconds at SendGrid; below this it can only be a delta.
_EPOCH_THRESHOLD = 1_000_000_000
# Postmark ErrorCode 406: "inactive recipient" (suppressed after a hard bounce, complaint or
# unsubscribe); https://postmarkapp.com/developer/api/overview#error-codes
_POSTMARK_INACTIVE = 406
# Resend 409: the same Idempotency-Key is still in flight; retry later with the same key.
_RESEND_CONCURRENT = "concurrent_idempotent_requests"
_RETRYABLE_STATUSES = frozenset({408, 425, 429})

# Raised before any byte of the request was written: resending is safe. httpx's own
# transports raise these only while connecting or waiting for a pooled connection.
_NOT_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)
# The same proof from aiohttp. httpx-aiohttp maps every aiohttp ClientConnectionError to
# httpx.ConnectTimeout, among them ServerDisconnectedError and ClientOSError, which aiohttp
# raises when the provider closed or reset the connection after the request was written (a
# stale keep-alive connection looks the same: aiohttp never retries a POST on it). So the
# aiohttp exception the transport chains decides: only a failure to connect (refused, DNS,
# TLS handshake, proxy) or a connect timeout proves that nothing was written.
_AIOHTTP_NOT_SENT: tuple[type[aiohttp.ClientError], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)
# Our own bug or configuration (bad URL, bad header): retrying cannot help.
_PERMANENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.TooManyRedirects,
)
# What an adapter catches around a request: httpx's errors, and aiohttp's errors that
# httpx-aiohttp lets through unmapped (a malformed response, an aborted upload).
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, aiohttp.ClientError)


def make_client(
    timeout: float = 15.0,
    max_connections: int = 100,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """One client per runner: keep-alive, a bounded pool, explicit timeouts, no redirects.

    httpx's API over aiohttp's connection pool (httpx-aiohttp): at 100 concurrent requests
    httpx's own pool sends ~170/s where aiohttp's sends ~2,800/s (benchmarks/send.py).
    `transport` lets tests pass `httpx.MockTransport`.
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
        limits=limits,
        follow_redirects=False,  # a redirected API call is a misconfigured base_url, not a send
        headers={"User-Agent": USER_AGENT},
        transport=transport if transport is not None else AiohttpTransport(limits=limits),
    )


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds the provider asked us to wait, or None when it did not say.

    Reads `Retry-After` (seconds or an HTTP-date), then `X-RateLimit-Reset` (epoch seconds,
    SendGrid), then `ratelimit-reset` (seconds, Resend). Never negative, but possibly huge
    or infinite: the retry policy caps what it waits (runner.providers.retry).
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    text = lowered.get("retry-after")
    if text is not None:
        seconds = _seconds_or_date(text.strip(), now)
        if seconds is not None:
            return seconds
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        number = _number(lowered.get(name))
        if number is not None:
            if number >= _EPOCH_THRESHOLD:
                number -= now.timestamp()
            return max(0.0, number)
    return None


def classify_response(
    response: httpx.Response,
    *,
    idempotent: bool,
    provider: str,
    now: datetime | None = None,
) -> ProviderError:
    """The ProviderError for a response the provider did not accept.

    429/408/425, 5xx and Resend's 409 `concurrent_idempotent_requests`: retryable, with
    `retry_after` when the headers say. 401/403: `auth` (the provider's queue pauses).
    Postmark ErrorCode 406: `suppress="bounced"`. Any other status: permanent.
    `idempotent` is accepted for symmetry with classify_exception: a response proves the
    outcome, so it does not change the classification.
    """
    status = response.status_code
    body = _json(response)
    detail = provider_message(body) or response.reason_phrase or "no message"
    message = f"{provider}: HTTP {status}: {detail}"
    wait = retry_after(response.headers, now or datetime.now(UTC))
    if status in _RETRYABLE_STATUSES or status >= 500:
        return ProviderError(message, retryable=True, retry_after=wait, status=status)
    if status == 409 and _error_name(body) == _RESEND_CONCURRENT:
        return ProviderError(message, retryable=True, retry_after=wait, status=status)
    if status in (401, 403):
        return ProviderError(message, retryable=False, auth=True, status=status)
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        message = f"{provider}: HTTP {status}: unexpected redirect to {location!r}; check base_url"
        return ProviderError(message, retryable=False, status=status)
    if isinstance(body, dict) and body.get("ErrorCode") == _POSTMARK_INACTIVE:
        return ProviderError(message, retryable=False, suppress="bounced", status=status)
    return ProviderError(message, retryable=False, status=status)


def classify_exception(error: Exception, *, idempotent: bool, provider: str) -> ProviderError:
    """The ProviderError for a request that got no response (one of TRANSPORT_ERRORS).

    Classified by what the error proves. Nothing written (a failed connect, a pool timeout):
    retryable. Refused locally (a bad URL): permanent. Anything else may have reached the
    provider (a connection closed or reset after writing, a read timeout, an unreadable
    answer): `outcome_unknown`, retryable only with an idempotency key; without one the
    send is reconciled from provider events, never resent blindly.
    """
    cause = error if isinstance(error, aiohttp.ClientError) else error.__cause__
    from_aiohttp = isinstance(cause, aiohttp.ClientError)
    kind = type(cause if from_aiohttp else error).__name__
    if isinstance(error, _PERMANENT):
        return ProviderError(f"{provider}: {kind}: request refused locally", retryable=False)
    proof = isinstance(cause, _AIOHTTP_NOT_SENT) if from_aiohttp else isinstance(error, _NOT_SENT)
    if proof:
        return ProviderError(f"{provider}: {kind}: request not sent", retryable=True)
    if idempotent:
        return ProviderError(
            f"{provider}: {kind}: outcome unknown; retrying with the same idempotency key",
            retryable=True,
            outcome_unknown=True,
        )
    return ProviderError(
        f"{provider}: {kind}: the provider may have accepted the message; not resent",
        retryable=False,
        outcome_unknown=True,
    )


def provider_message(body: Any) -> str | None:
    """The human message in a provider's JSON error body, cut to MAX_MESSAGE characters.

    Postmark `Message`, SendGrid `errors[].message`, Mailgun and Resend `message` (Resend's
    `name` too).
    """
    if not isinstance(body, dict):
        return None
    parts: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and isinstance(item.get("message"), str):
                field = item.get("field")
                prefix = f"{field}: " if isinstance(field, str) and field else ""
                parts.append(prefix + item["message"])
    for key in ("Message", "message"):
        value = body.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
            break
    name = _error_name(body)
    if name is not None:
        parts.insert(0, f"[{name}]")
    if isinstance(body.get("ErrorCode"), int) and body["ErrorCode"] != 0:
        parts.insert(0, f"[ErrorCode {body['ErrorCode']}]")
    text = " ".join(parts).strip()
    return text[:MAX_MESSAGE] if text else None


def _error_name(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("name"), str):
        return str(body["name"])
    return None


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    # Infinity stays: a delay of more digits than a float holds still means "wait long".
    return None if math.isnan(value) else value


def _seconds_or_date(text: str, now: datetime) -> float | None:
    number = _number(text)
    if number is not None:
        return max(0.0, number)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
