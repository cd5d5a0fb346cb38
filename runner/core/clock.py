"""Where the runner reads the current time: the system clock, or a fake one for tests.

Pure code takes the instant as an argument; loops ask a `Clock` once per tick. The clock a
process runs on is chosen at the command line (cli/clocks.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current instant (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


def aware_utc(instant: datetime) -> datetime:
    """`instant` in UTC; ValueError for a naive datetime."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: a clock needs an aware instant")
    return instant.astimezone(UTC)


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        """The current instant."""
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = aware_utc(start)

    def now(self) -> datetime:
        """The instant last set."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (or back, for a negative delta) by `delta`."""
        self._now += delta

    def set(self, instant: datetime) -> None:
        """Jump to `instant`."""
        self._now = aware_utc(instant)
