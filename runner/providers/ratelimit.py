"""A token bucket per provider, from `rate_limit: "50/s"` in postwright.yaml
(docs/postwright.example.yaml).

One bucket is shared by every send of that provider in the process; time and sleeping are
injected so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
# Rounding must not leave a bucket a hair short of a token, sleeping ever shorter waits.
_EPSILON = 1e-9


def parse_rate(text: str) -> tuple[int, float]:
    """`"50/s"` -> (50, 1.0): that many requests per that many seconds."""
    count, _, unit = text.strip().partition("/")
    if unit not in _PERIODS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"rate limit {text!r} is not N/s, N/m or N/h with N >= 1")
    return int(count), _PERIODS[unit]


class RateLimiter:
    """At most N requests per period, with bursts of up to N (a full bucket)."""

    def __init__(
        self,
        rate: str,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.capacity, period = parse_rate(rate)
        self.per_second = self.capacity / period
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = float(self.capacity)
        self._stamp = monotonic()
        # Waiters queue in arrival order, so a burst cannot starve an earlier caller.
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._monotonic()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self.capacity), self._tokens + elapsed * self.per_second)

    def try_acquire(self) -> float:
        """Take a token now and return 0.0, or return the seconds until one is available."""
        self._refill()
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.per_second

    async def acquire(self, max_wait: float | None = None) -> bool:
        """Wait until a token is available and take it; True.

        With `max_wait`, give up (False, no token taken) as soon as it is clear the token
        would come more than `max_wait` seconds after the call.
        """
        start = self._monotonic()
        async with self._lock:
            while (wait := self.try_acquire()) > 0.0:
                if max_wait is not None and self._monotonic() - start + wait > max_wait:
                    return False
                await self._sleep(wait)
            return True
