"""What a transport error proves, through the real client (httpx over httpx-aiohttp's
transport) and a real server on 127.0.0.1 that reads each request and then misbehaves.

httpx-aiohttp maps every aiohttp connection error, a connection the provider dropped after
reading the request included, to httpx.ConnectTimeout; only the chained aiohttp exception
tells "never written" from "maybe accepted". These tests pin both facts, so an upgrade that
changes the mapping shows up here.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import pytest
from httpx_aiohttp.transport import map_aiohttp_exceptions

from runner.providers.base import ProviderError
from runner.providers.http import TRANSPORT_ERRORS, classify_exception, make_client
from tests.fakes.flaky import Action, Flaky
from tests.fakes.postmark import accept_all

BODY = b'{"From": "a@shop.test", "To": "b@shop.test", "Subject": "Hi", "TextBody": "x"}'


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    with Flaky(accept_all) as server:
        yield server


def post_each(url: str, count: int, timeout: float = 5.0) -> list[httpx.Response | Exception]:
    """POST `count` times one after the other on one pooled client: the answer or the error."""

    async def main() -> list[httpx.Response | Exception]:
        found: list[httpx.Response | Exception] = []
        async with make_client(timeout=timeout) as client:
            for _ in range(count):
                try:
                    found.append(await client.post(url + "/email", content=BODY))
                except TRANSPORT_ERRORS as error:
                    found.append(error)
        return found

    return asyncio.run(main())


def classified(error: httpx.Response | Exception, *, idempotent: bool) -> ProviderError:
    assert isinstance(error, Exception), f"expected an error, got {error!r}"
    return classify_exception(error, idempotent=idempotent, provider="mail")


@pytest.mark.parametrize("action", ["drop", "reset"])
def test_a_connection_lost_after_the_request_on_a_fresh_connection_may_have_sent_it(
    flaky: Flaky, action: Action
) -> None:
    [error] = post_each(flaky.then(action).base_url, 1)
    assert [(r.path, r.connection) for r in flaky.received] == [("/email", 1)]  # it arrived
    keyless = classified(error, idempotent=False)
    assert (keyless.retryable, keyless.outcome_unknown) == (False, True)
    assert "not resent" in keyless.message
    keyed = classified(error, idempotent=True)
    assert (keyed.retryable, keyed.outcome_unknown) == (True, True)


def test_a_reused_keep_alive_connection_dropped_after_the_request_may_have_sent_it(
    flaky: Flaky,
) -> None:
    first, second = post_each(flaky.then("answer", "drop").base_url, 2)
    assert isinstance(first, httpx.Response) and first.status_code == 200
    assert [r.connection for r in flaky.received] == [1, 1]  # the same keep-alive connection
    # What the transport says: a "connect timeout", though the request went out.
    assert isinstance(second, httpx.ConnectTimeout)
    assert isinstance(second.__cause__, aiohttp.ServerDisconnectedError)
    error = classified(second, idempotent=False)
    assert (error.retryable, error.outcome_unknown) == (False, True)
    assert error.message.startswith("mail: ServerDisconnectedError:")


def test_a_read_timeout_may_have_sent_it(flaky: Flaky) -> None:
    [error] = post_each(flaky.then("stall").base_url, 1, timeout=0.3)
    assert flaky.arrived.is_set()
    result = classified(error, idempotent=False)
    assert (result.retryable, result.outcome_unknown) == (False, True)


def test_a_refused_connection_proves_nothing_was_sent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [error] = post_each(f"http://127.0.0.1:{port}", 1)
    assert isinstance(error, Exception)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)
    result = classified(error, idempotent=False)
    assert (result.retryable, result.outcome_unknown) == (True, False)
    assert "request not sent" in result.message


def _mapped(error: Exception) -> Exception:
    """`error` as httpx-aiohttp hands it to httpx's caller."""
    try:
        with map_aiohttp_exceptions():
            raise error
    except Exception as mapped:
        return mapped
    raise AssertionError("not raised")


# aiohttp wants its ConnectionKey; its messages only read these fields.
KEY: Any = SimpleNamespace(host="api.provider.test", port=443, ssl=True)


@pytest.mark.parametrize(
    ("error", "sent"),
    [
        # failures to connect: DNS, refused, TLS handshake, a connect (or pool) timeout
        (aiohttp.ClientConnectorDNSError(KEY, OSError(-2, "Name or service not known")), False),
        (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "refused")), False),
        (aiohttp.ClientConnectorSSLError(KEY, OSError(1, "handshake failure")), False),
        (aiohttp.ConnectionTimeoutError("connect timeout"), False),
        # after the request was (maybe) written
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), True),
        (aiohttp.SocketTimeoutError("read timeout"), True),
        (aiohttp.ClientPayloadError("truncated body"), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_each_aiohttp_error_is_judged_by_what_it_proves(error: Exception, sent: bool) -> None:
    mapped = _mapped(error)
    assert isinstance(mapped, httpx.HTTPError) and mapped.__cause__ is error
    result = classify_exception(mapped, idempotent=False, provider="mail")
    assert (result.outcome_unknown, result.retryable) == (sent, not sent)


def test_an_aiohttp_error_the_transport_does_not_map_may_have_sent_it() -> None:
    # A malformed answer reaches the adapter as aiohttp's own exception.
    raw = aiohttp.ClientResponseError(None, (), status=0, message="bad status line")  # type: ignore[arg-type]
    assert _mapped(raw) is raw  # not an httpx.HTTPError: adapters catch TRANSPORT_ERRORS
    assert isinstance(raw, TRANSPORT_ERRORS)
    result = classify_exception(raw, idempotent=False, provider="mail")
    assert (result.retryable, result.outcome_unknown) == (False, True)
