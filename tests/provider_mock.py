"""Provider adapters over httpx's MockTransport, for the adapters' unit tests: one action on
a provider whose client (the runner's, from make_client) is closed after, canned answers,
and the error a call raises."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from runner.providers.base import ProviderError
from runner.providers.http import make_client

P = TypeVar("P")
T = TypeVar("T")
Handler = Callable[[httpx.Request], httpx.Response]


def over_mock(
    handler: Handler,
    provider: Callable[[httpx.AsyncClient], P],
    action: Callable[[P], Awaitable[T]],
) -> T:
    """Run `action` on `provider(client)`, the client answering with `handler`."""

    async def main() -> T:
        async with make_client(transport=httpx.MockTransport(handler)) as client:
            return await action(provider(client))

    return asyncio.run(main())


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Handler:
    """A handler answering `status` with `body`: bytes as they are, else JSON (None: empty)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def provider_error(call: Callable[[], object]) -> ProviderError:
    """The ProviderError `call` raises."""
    with pytest.raises(ProviderError) as raised:
        call()
    return raised.value
