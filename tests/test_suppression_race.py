"""A suppression written while the engine processes an event of the same subscriber, on
PostgreSQL with two concurrent writers (where replicas really run them at once): neither
write is lost.

The engine reads a subscriber, changes it and saves it whole under the engine lock. A
provider's complaint (webhook) or refusal (sender) arriving in between used to commit its
suppression without that lock, and the engine's save then wrote the old, unsuppressed row
back. Suppressing now waits for the engine lock, and reads the subscriber after it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from runner.core.clock import FakeClock
from runner.core.records import Subscriber
from runner.engine import suppression
from runner.engine.catalog import Catalog
from runner.engine.feedback import record_provider_event
from runner.store.base import WriteTx
from runner.store.postgres import PostgresStore
from tests.test_feedback import LATER, T0, event, seed

ANN = "ann@shop.test"
WAIT = 5.0  # seconds: the bound of every wait on the other writer


def complaint(tx: WriteTx) -> None:
    """A provider's complaint webhook about Ann's message."""
    record_provider_event(tx, Catalog(), "default", event("c1", "complained"))


def refusal(tx: WriteTx) -> None:
    """The sender's record of a provider refusing Ann's address for good."""
    ann = tx.subscriber(ANN)
    assert ann is not None and ann.id is not None
    source = suppression.from_refused_send("default", "s2")
    suppression.suppress(tx, ann.id, "complained", LATER, source)


def waits_for_a_lock(url: str) -> bool:
    """Whether a session waits for an advisory lock (the engine lock) right now."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return row is not None and row[0] > 0


@pytest.mark.parametrize("suppressing", [complaint, refusal], ids=["webhook", "sender"])
def test_a_suppression_during_event_processing_keeps_both_writes(
    postgres_url: str, suppressing: Callable[[WriteTx], None]
) -> None:
    read, other_done = threading.Event(), threading.Event()

    def processing(tx: WriteTx) -> None:
        """What the engine does with a `subscriber.updated` event for Ann."""
        tx.lock_engine()
        ann = tx.subscriber(ANN)
        assert ann is not None
        read.set()
        # Let the other writer commit meanwhile if it can (before the fix it could); with
        # the fix it waits for this transaction's engine lock.
        deadline = time.monotonic() + WAIT
        while not other_done.is_set() and not waits_for_a_lock(postgres_url):
            assert time.monotonic() < deadline, "the other writer neither finished nor waited"
            time.sleep(0.01)
        ann.fields = {**ann.fields, "plan": "pro"}
        tx.save_subscriber(ann)

    async def other(store: PostgresStore) -> None:
        assert await asyncio.to_thread(read.wait, WAIT)
        try:
            await store.write(suppressing)
        finally:
            other_done.set()

    async def main() -> Subscriber | None:
        store = PostgresStore(postgres_url, FakeClock(T0))
        try:
            await store.write(lambda tx: seed(tx, "postmark"))
            await asyncio.gather(store.write(processing), other(store))
            return await store.read(lambda tx: tx.subscriber(ANN))
        finally:
            await store.close()

    ann = asyncio.run(main())
    assert ann is not None
    assert ann.fields == {"name": "Ann", "plan": "pro"}  # the engine's change
    assert ann.suppressed == "complained"  # and the suppression
