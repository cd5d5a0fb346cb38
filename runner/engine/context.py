"""What every engine step needs besides the store and the clock: runner-wide values, the
unsubscribe key and ids. The composition root reads the settings and hands the values in."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from runner.store.base import Store, WriteTx

UNSUBSCRIBE_KEY_META = "unsubscribe_key"


@dataclass(frozen=True)
class EngineContext:
    """Runner-wide values the engine reads (fixed at start-up by whoever starts it)."""

    default_timezone: str
    public_url: str
    unsubscribe_key: bytes
    lease_seconds: int = 60
    max_attempts: int = 12  # tries of one send before it fails (retries_exhausted)


def new_id(now: datetime) -> str:
    """A unique id that sorts by creation time (48-bit milliseconds, then 64 random bits)."""
    millis = int(now.timestamp() * 1000)
    return f"{millis:012x}{secrets.token_hex(8)}"


def new_ids(now: datetime, count: int) -> list[str]:
    """`count` ids like `new_id`'s, consecutive after one random start: a batch lands side by
    side in the store's id index instead of all over it (a random 64-bit start keeps two
    batches of the same millisecond apart as surely as random ids do)."""
    millis = int(now.timestamp() * 1000)
    start = secrets.randbits(64)
    return [f"{millis:012x}{(start + step) % 2**64:016x}" for step in range(count)]


async def unsubscribe_key(configured: bytes | None, store: Store) -> bytes:
    """The `configured` key, else the one generated on first start and kept in the store."""
    if configured is not None:
        return configured

    def work(tx: WriteTx) -> bytes:
        stored = tx.meta(UNSUBSCRIBE_KEY_META)
        if stored is None:
            stored = secrets.token_hex(32)
            tx.set_meta(UNSUBSCRIBE_KEY_META, stored)
        return bytes.fromhex(stored)

    return await store.write(work)
