"""A provider rate limit held across replicas (issue 6): the in-process token bucket is the first
gate, then each request claims one of the N slots of the current fixed window in the store.

Slots are `claim_once` keys `rate:<provider>:<window start>:<n>`, so no table is needed and
the database decides which replica gets a slot. Fixed windows allow up to 2N requests
around a window boundary (N at the end of one window, N at the start of the next).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from runner.core.clock import Clock
from runner.providers.ratelimit import RateLimiter, parse_rate
from runner.store.base import Store, WriteTx


def rate_key(provider: str, window: datetime, slot: int) -> str:
    """The claim_once key of one slot of one window."""
    return f"rate:{provider}:{window.isoformat()}:{slot}"


class SharedRateLimiter(RateLimiter):
    """At most N requests per period over every replica sharing `store`."""

    def __init__(
        self,
        rate: str,
        provider: str,
        store: Store,
        clock: Clock,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__(rate, monotonic=monotonic, sleep=sleep)
        self.limit, self.period = parse_rate(rate)
        self.provider = provider
        self._store = store
        self._clock = clock
        # Slots below the hint of its window were seen taken (or taken here): skip them.
        self._hint: tuple[datetime, int] | None = None

    def window_of(self, now: datetime) -> datetime:
        """The start of the fixed window holding `now`."""
        start = math.floor(now.timestamp() / self.period) * self.period
        return datetime.fromtimestamp(start, UTC)

    async def acquire(self, max_wait: float | None = None) -> bool:
        """Wait for a local token and a cluster slot; False (after at most `max_wait` seconds
        of waiting) when the cluster's slots run out for longer than that."""
        start = self._monotonic()
        if not await super().acquire(max_wait):
            return False
        while True:
            now = self._clock.now()
            window = self.window_of(now)
            if await self._store.write(self._claimer(window, now)):
                return True
            wait = (window.timestamp() + self.period) - now.timestamp()
            if max_wait is not None and self._monotonic() - start + wait > max_wait:
                return False
            await self._sleep(max(wait, 0.0))

    def _claimer(self, window: datetime, now: datetime) -> Callable[[WriteTx], bool]:
        return lambda tx: self._claim(tx, window, now)

    def _claim(self, tx: WriteTx, window: datetime, now: datetime) -> bool:
        first = self._hint[1] if self._hint is not None and self._hint[0] == window else 0
        for slot in range(first, self.limit):
            if tx.claim_once(rate_key(self.provider, window, slot), now):
                self._hint = (window, slot + 1)
                return True
        self._hint = (window, self.limit)
        return False
