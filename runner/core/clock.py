"""Where the runner reads the current time: the system clock, or a fake one for tests.

A `FileClock` lets tests that span processes share one fake time: each `now()` reads an
RFC 3339 instant from a file (named by POSTWRIGHT_FAKE_CLOCK) that the test rewrites.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

FAKE_CLOCK_VARIABLE = "POSTWRIGHT_FAKE_CLOCK"


class Clock(Protocol):
    """Tells the current instant (timezone-aware, UTC)."""

    def now(self) -> datetime: ...


def _aware_utc(instant: datetime) -> datetime:
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
        self._now = _aware_utc(start)

    def now(self) -> datetime:
        """The instant last set."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward (or back, for a negative delta) by `delta`."""
        self._now += delta

    def set(self, instant: datetime) -> None:
        """Jump to `instant`."""
        self._now = _aware_utc(instant)


class FileClock:
    """A clock that reads its instant from a file on every `now()`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        """The instant written in the file; ValueError when it holds none."""
        text = self.path.read_text(encoding="utf-8").strip()
        try:
            instant = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{self.path}: {text!r} is not an RFC 3339 instant") from None
        return _aware_utc(instant)

    @staticmethod
    def write(path: Path, instant: datetime) -> None:
        """Write `instant` to `path` atomically, so a reader never sees half a file."""
        text = _aware_utc(instant).isoformat().replace("+00:00", "Z")
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text + "\n", encoding="utf-8")
        os.replace(partial, path)


def clock_from_env(environ: Mapping[str, str]) -> Clock:
    """A FileClock when POSTWRIGHT_FAKE_CLOCK names a file, else the system clock."""
    path = environ.get(FAKE_CLOCK_VARIABLE, "")
    return FileClock(Path(path)) if path else SystemClock()
