"""What every engine step needs besides the store and the clock: settings and ids."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class EngineContext:
    """Runner-wide values the engine reads (from Settings, fixed at start-up)."""

    default_timezone: str
    public_url: str
    unsubscribe_key: bytes
    lease_seconds: int = 60
    max_attempts: int = 12  # tries of one send before it fails (retries_exhausted)


def new_id(now: datetime) -> str:
    """A unique id that sorts by creation time (48-bit milliseconds, then 64 random bits)."""
    millis = int(now.timestamp() * 1000)
    return f"{millis:012x}{secrets.token_hex(8)}"
