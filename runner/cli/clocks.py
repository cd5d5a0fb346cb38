"""The clock a process runs on: the system clock, or a fake time shared through a file.

A `FileClock` lets tests that span processes share one fake time: each `now()` reads an
RFC 3339 instant from a file (named by POSTWRIGHT_FAKE_CLOCK) that the test rewrites.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from runner.core.clock import Clock, SystemClock, aware_utc

FAKE_CLOCK_VARIABLE = "POSTWRIGHT_FAKE_CLOCK"


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
        return aware_utc(instant)

    @staticmethod
    def write(path: Path, instant: datetime) -> None:
        """Write `instant` to `path` atomically, so a reader never sees half a file."""
        text = aware_utc(instant).isoformat().replace("+00:00", "Z")
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text + "\n", encoding="utf-8")
        os.replace(partial, path)


def clock_from_env(environ: Mapping[str, str]) -> Clock:
    """A FileClock when POSTWRIGHT_FAKE_CLOCK names a file, else the system clock."""
    path = environ.get(FAKE_CLOCK_VARIABLE, "")
    return FileClock(Path(path)) if path else SystemClock()
