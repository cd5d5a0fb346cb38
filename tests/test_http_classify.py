"""Classifying provider responses and transport errors through httpx.MockTransport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from runner.providers.base import ProviderError
from runner.providers.http import (
    MAX_MESSAGE,
    classify_exception,
    classify_response,
    make_client,
    provider_message,
    retry_after,
)

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SECRET = "sk-live-very-secret-token"


def answer(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    content = (
        b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers=headers or {})

    return handler


def exchange(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Response:
    async def main() -> httpx.Response:
        async with make_client(transport=httpx.MockTransport(handler)) as client:
            return await client.post(
                "https://api.provider.test/email", headers={"Authorization": f"Bearer {SECRET}"}
            )

    return asyncio.run(main())


def classify(status: int, body: Any = None, headers: dict[str, str] | None = None) -> ProviderError:
    response = exchange(answer(status, body, headers))
    return classify_response(response, idempotent=False, provider="mail", now=NOW)


def flags(error: ProviderError) -> tuple[bool, bool, bool, str | None, float | None, int | None]:
    return (
        error.retryable,
        error.outcome_unknown,
        error.auth,
        error.suppress,
        error.retry_after,
        error.status,
    )


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        # 429 with each provider's way of saying when
        (429, None, {"Retry-After": "12"}, (True, False, False, None, 12.0, 429)),
        (
            429,
            None,
            {"Retry-After": "Mon, 02 Mar 2026 08:01:30 GMT"},
            (True, False, False, None, 90.0, 429),
        ),
        (
            429,
            None,
            {"X-RateLimit-Reset": str(int(NOW.timestamp()) + 40)},
            (True, False, False, None, 40.0, 429),
        ),
        (429, None, {"ratelimit-reset": "3"}, (True, False, False, None, 3.0, 429)),
        (429, None, {}, (True, False, False, None, None, 429)),
        # 5xx: retryable (Retry-After honoured there too)
        (500, {"Message": "oops"}, {}, (True, False, False, None, None, 500)),
        (502, None, {}, (True, False, False, None, None, 502)),
        (503, None, {"Retry-After": "60"}, (True, False, False, None, 60.0, 503)),
        (504, None, {}, (True, False, False, None, None, 504)),
        (408, None, {}, (True, False, False, None, None, 408)),
        # Resend: the same key still in flight -> retry with the same key
        (
            409,
            {"name": "concurrent_idempotent_requests", "message": "in flight"},
            {},
            (True, False, False, None, None, 409),
        ),
        # Resend: the same key with another payload -> permanent (our bug)
        (
            409,
            {"name": "invalid_idempotent_request", "message": "payload differs"},
            {},
            (False, False, False, None, None, 409),
        ),
        # 401/403 pause the provider
        (401, {"ErrorCode": 10, "Message": "bad token"}, {}, (False, False, True, None, None, 401)),
        (403, {"errors": [{"message": "forbidden"}]}, {}, (False, False, True, None, None, 403)),
        # Postmark inactive recipient -> suppress
        (
            422,
            {"ErrorCode": 406, "Message": "inactive recipient"},
            {},
            (False, False, False, "bounced", None, 422),
        ),
        # other 4xx: permanent
        (422, {"ErrorCode": 300, "Message": "invalid"}, {}, (False, False, False, None, None, 422)),
        (
            400,
            {"errors": [{"field": "to", "message": "x"}]},
            {},
            (False, False, False, None, None, 400),
        ),
        (404, None, {}, (False, False, False, None, None, 404)),
        (413, b"too big", {}, (False, False, False, None, None, 413)),
        (
            302,
            None,
            {"Location": "https://elsewhere.test/"},
            (False, False, False, None, None, 302),
        ),
    ],
)
def test_every_status_row(
    status: int,
    body: Any,
    headers: dict[str, str],
    expected: tuple[bool, bool, bool, str | None, float | None, int | None],
) -> None:
    error = classify(status, body, headers)
    assert flags(error) == expected
    assert error.message.startswith(f"mail: HTTP {status}: ")
    assert SECRET not in error.message


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            {"ErrorCode": 300, "Message": "Invalid 'To' address."},
            "[ErrorCode 300] Invalid 'To' address.",
        ),
        (
            {"errors": [{"field": "from", "message": "The from address does not match"}]},
            "from: The from address does not match",
        ),
        (
            {"message": "'to' parameter is not a valid address"},
            "'to' parameter is not a valid address",
        ),
        (
            {"name": "validation_error", "message": "Invalid `to` field.", "statusCode": 422},
            "[validation_error] Invalid `to` field.",
        ),
        ({"unexpected": True}, None),
        (["not", "an", "object"], None),
        ({"message": "x" * 5000}, "x" * MAX_MESSAGE),
    ],
)
def test_the_provider_message_is_extracted(body: Any, text: str | None) -> None:
    assert provider_message(body) == text


def test_the_message_names_the_provider_and_its_words() -> None:
    error = classify(422, {"ErrorCode": 300, "Message": "Invalid 'To' address."})
    assert error.message == "mail: HTTP 422: [ErrorCode 300] Invalid 'To' address."
    assert classify(404, b"<html>not json</html>").message == "mail: HTTP 404: Not Found"
    redirect = classify(301, None, {"Location": "https://x.test/"})
    assert "redirect" in redirect.message and "base_url" in redirect.message


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "Mon, 02 Mar 2026 07:59:00 GMT"}, 0.0),  # a date in the past
        ({"Retry-After": "Mon, 02 Mar 2026 09:00:00 GMT"}, 3600.0),
        ({"Retry-After": "soon", "ratelimit-reset": "7"}, 7.0),  # unreadable: next header
        ({"X-RateLimit-Reset": "30"}, 30.0),  # small values are a delta, not an epoch
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) - 10)}, 0.0),
        ({"Retry-After": "5", "X-RateLimit-Reset": str(int(NOW.timestamp()) + 99)}, 5.0),
        ({"X-RateLimit-Reset": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after(headers, NOW) == seconds


def raising(error: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


def transport_error(error: Exception) -> httpx.HTTPError:
    try:
        exchange(raising(error))
    except httpx.HTTPError as raised:
        return raised
    raise AssertionError("no error raised")


NOT_SENT = [
    httpx.ConnectError("refused"),
    httpx.ConnectTimeout("slow connect"),
    httpx.PoolTimeout("pool full"),
]
MAYBE_SENT = [
    httpx.ReadTimeout("slow answer"),
    httpx.WriteTimeout("slow upload"),
    httpx.RemoteProtocolError("peer closed connection"),
    httpx.ReadError("reset by peer"),
]


@pytest.mark.parametrize("error", NOT_SENT, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("idempotent", [True, False])
def test_errors_before_sending_are_retryable(error: Exception, idempotent: bool) -> None:
    raised = transport_error(error)
    classified = classify_exception(raised, idempotent=idempotent, provider="mail")
    assert (classified.retryable, classified.outcome_unknown) == (True, False)
    assert classified.message.startswith(f"mail: {type(error).__name__}:")


@pytest.mark.parametrize("error", MAYBE_SENT, ids=lambda e: type(e).__name__)
def test_errors_after_sending_retry_only_with_an_idempotency_key(error: Exception) -> None:
    raised = transport_error(error)
    keyed = classify_exception(raised, idempotent=True, provider="resend")
    assert (keyed.retryable, keyed.outcome_unknown) == (True, True)
    keyless = classify_exception(raised, idempotent=False, provider="postmark")
    assert (keyless.retryable, keyless.outcome_unknown, keyless.auth) == (False, True, False)


def test_local_errors_are_permanent() -> None:
    error = classify_exception(httpx.UnsupportedProtocol("ftp"), idempotent=True, provider="mail")
    assert (error.retryable, error.outcome_unknown) == (False, False)


def test_the_client_is_pooled_with_explicit_timeouts_and_no_redirects() -> None:
    client = make_client(timeout=7.0, max_connections=12)
    try:
        assert client.follow_redirects is False
        assert client.timeout == httpx.Timeout(7.0, connect=5.0)
        transport = client._transport
        assert isinstance(transport, AiohttpTransport)
        limits = transport.limits
        assert (limits.max_connections, limits.max_keepalive_connections) == (12, 12)
    finally:
        asyncio.run(client.aclose())


def test_a_redirect_is_not_followed() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(307, headers={"Location": "https://evil.test/steal"})

    response = exchange(handler)
    assert response.status_code == 307 and len(calls) == 1
