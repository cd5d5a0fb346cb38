"""What the subscribers work costs, on SQLite, each figure next to a baseline of the same run:

1. Event processing with `secure_delete` (freed space zeroed, for erasure) against the same
   events processed with it off: new subscribers, then a field update of each (the update
   rewrites every row, so every old row is freed).
2. Read your writes: a catch-up right after one event was stored (what an `api` trigger
   posted after an event pays) against a catch-up with nothing waiting (every call pays).
3. Erasing one person with 50 events and 50 messages among EVENTS others, against showing
   that person (`GET /v1/subscribers/{email}`).

In process, no HTTP (the HTTP layer is unchanged), one temp directory, a fake clock.

    .venv/bin/python benchmarks/subscribers.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runner.checking.tree import check_working_tree
from runner.core.clock import FakeClock
from runner.core.records import IncomingEvent, Message, PendingSend, SendStatus
from runner.engine.context import EngineContext
from runner.engine.worker import Worker
from runner.gitops.reload import apply_repository
from runner.providers import Providers
from runner.server.api.subscriber_ops import SubscriberOps
from runner.store.base import WriteTx
from runner.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CTX = EngineContext("UTC", "https://mail.shop.test", b"unsubscribe-key-for-bench-000000")
WELCOME = """\
id: welcome
status: running
trigger: {type: event, event: subscriber.added}
wait: 1d
email:
  from: "Shop <news@shop.test>"
  subject: "Welcome {{ subscriber.fields.name | default('friend') }}"
  text: "Hello {{ subscriber.email }}"
"""
BATCH = 500
PERSON = "erase.me@shop.test"


def events(prefix: str, count: int, fields: dict[str, object]) -> list[IncomingEvent]:
    """`count` events for `count` addresses."""
    return [
        IncomingEvent(
            id=f"{prefix}-{n}",
            type="signup",
            email=f"p{n}@shop.test",
            fields=dict(fields),
            groups=None,
            data={"n": n},
            occurred_at=None,
            body_hash=f"{prefix}-{n}",
        )
        for n in range(count)
    ]


async def opened(folder: Path, name: str, secure_delete: bool) -> tuple[SqliteStore, Worker]:
    """A store with the welcome automation applied, and a worker that only processes."""
    repo = folder / name
    (repo / "automations").mkdir(parents=True)
    (repo / "automations" / "welcome.yaml").write_text(WELCOME, encoding="utf-8")
    clock = FakeClock(T0)
    store = SqliteStore(repo / "store.db", clock)
    if not secure_delete:
        # The writer runs one statement at a time from its own thread; this one is issued
        # before any work is queued, so it cannot interleave with a transaction.
        store._writer.execute("PRAGMA secure_delete = OFF")
    await apply_repository(store, check_working_tree(repo, T0), T0, None)
    worker = Worker(store, CTX, clock, Providers())
    worker.catch_up_seconds = 3600.0
    return store, worker


async def ingest(store: SqliteStore, items: list[IncomingEvent]) -> None:
    for start in range(0, len(items), BATCH):
        await store.ingest(items[start : start + BATCH])


async def processing(folder: Path, count: int, secure_delete: bool) -> float:
    """Events processed per second (creations, then updates of every row)."""
    store, worker = await opened(folder, f"process-{secure_delete}", secure_delete)
    try:
        await ingest(store, events("new", count, {"name": "A"}))
        await ingest(store, events("upd", count, {"name": "B" * 40}))
        started = time.perf_counter()
        await worker.catch_up()
        return 2 * count / (time.perf_counter() - started)
    finally:
        await store.close()


async def timed(rounds: int, step: Callable[[], Awaitable[object]]) -> list[float]:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        await step()
        took.append((time.perf_counter() - started) * 1000)
    return took


async def catch_up_latency(folder: Path) -> tuple[list[float], list[float]]:
    """Milliseconds of a catch-up with nothing waiting, and right after one stored event."""
    store, worker = await opened(folder, "catch-up", True)
    try:
        idle = await timed(200, worker.catch_up)
        numbers = iter(range(10**6))

        async def after_event() -> None:
            n = next(numbers)
            await store.ingest(events(f"one{n}", 1, {}))
            started = time.perf_counter()
            await worker.catch_up()
            took.append((time.perf_counter() - started) * 1000)

        took: list[float] = []
        for _ in range(200):
            await after_event()
        return idle, took
    finally:
        await store.close()


async def erasure(folder: Path, count: int) -> tuple[float, float, int]:
    """Milliseconds to show, then to erase, one person among `count` other events."""
    store, worker = await opened(folder, "erase", True)
    ops = SubscriberOps(store, worker, store.clock)
    try:
        await ingest(store, events("other", count, {"name": "A"}))
        mine = [
            IncomingEvent(f"me-{n}", "visit", PERSON, {"n": n}, None, {"page": n}, None, f"m{n}")
            for n in range(50)
        ]
        await store.ingest(mine)
        await worker.catch_up()
        await store.write(lambda tx: _messages(tx, 50))
        started = time.perf_counter()
        await ops.show(PERSON)
        shown = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        done = await ops.erase(PERSON)
        erased = (time.perf_counter() - started) * 1000
        return shown, erased, done["scrubbed"]["events"]
    finally:
        await store.close()


def _messages(tx: WriteTx, count: int) -> None:
    person = tx.subscriber(PERSON)
    assert person is not None and person.id is not None
    for n in range(count):
        send = PendingSend(
            f"bench-send-{n}", "welcome", person.id, PERSON, T0, SendStatus.SENT, T0,
            {"name": "visit"}, T0, f"bench-send-{n}",
        )  # fmt: skip
        tx.insert_pending(send)
        tx.insert_message(
            Message(
                f"bench-send-{n}",
                send.id,
                "welcome",
                person.id,
                PERSON,
                "shop@shop.test",
                "Welcome",
                "<p>Hello</p>",
                "Hello",
                {},
                "default",
                "outbox",
                None,
                T0 + timedelta(seconds=n),
                1,
            )
        )


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms"


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        off = await processing(folder, count, secure_delete=False)
        on = await processing(folder, count, secure_delete=True)
        print(f"event processing, {2 * count} events (creations then updates):")
        print(f"  secure_delete off (baseline)  {off:9,.0f} events/s")
        print(f"  secure_delete on              {on:9,.0f} events/s  ({on / off:.2f} x)")
        idle, after = await catch_up_latency(folder)
        print("read your writes, 200 calls each:")
        print(f"  catch-up, nothing waiting (baseline)  {_percentiles(idle)}")
        print(f"  catch-up right after one event        {_percentiles(after)}")
        shown, erased, scrubbed = await erasure(folder, count)
        print(f"one person (50 events, 50 messages) among {count} other events:")
        print(f"  show (baseline)  {shown:8.1f} ms")
        print(f"  erase            {erased:8.1f} ms  ({scrubbed} events scrubbed)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().events))
