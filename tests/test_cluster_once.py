"""Work that must happen once per cluster (issue 6 item 2): two replicas (two stores on one
PostgreSQL database, one shared clock) doing the same time-driven or reload work at the same
instant record a status moment, create a send, or apply a file change once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from runner.checking.tree import Tree, TreeChecker
from runner.core.clock import FakeClock
from runner.core.records import HistoryEntry, PendingSend, SendStatus, Subscriber
from runner.engine import scheduler
from runner.engine.apply import AppliedVersions, ApplyReport, apply_files, execute, plan_files
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from runner.engine.shared_rate import SharedRateLimiter
from runner.repo.snapshot import MemorySnapshot
from runner.store import open_store
from runner.store.base import Store, WriteTx
from runner.store.postgres import PostgresStore
from tests.test_apply import automation, files

T = TypeVar("T")
CTX = EngineContext("UTC", "http://localhost:8080", b"k" * 32)
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ALL = tuple(SendStatus)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def tree_of(tree_files: dict[str, str], now: datetime) -> Tree:
    snapshot = MemorySnapshot({path: text.encode() for path, text in tree_files.items()})
    return TreeChecker().check(snapshot, now)


def on_two_replicas(url: str, body: Callable[[Store, Store], Awaitable[T]]) -> T:
    """Run `body` with two stores on one database and one fake clock."""

    async def main() -> T:
        clock = FakeClock(T0)
        first, second = PostgresStore(url, clock), PostgresStore(url, clock)
        try:
            return await body(first, second)
        finally:
            await first.close()
            await second.close()

    return asyncio.run(main())


async def apply_on(store: Store, tree_files: dict[str, str], now: datetime) -> ApplyReport:
    tree = tree_of(tree_files, now)
    return await store.write(lambda tx: apply_files(tx, tree, now, None))


async def subscribe(store: Store, *emails: str, **fields: str) -> None:
    def work(tx: WriteTx) -> None:
        for email in emails:
            tx.save_subscriber(Subscriber(None, email, dict(fields), set(), created_at=T0))

    await store.write(work)


async def tick_together(first: Store, second: Store, now: datetime) -> list[bool]:
    """Both replicas read their catalog, wait for each other, then tick in one transaction
    each: neither has seen the other's writes when it decides what is due."""
    barrier = threading.Barrier(2, timeout=20)

    def work(tx: WriteTx) -> bool:
        catalog = Catalog.build(tx.automations(), tx.status_changes())
        barrier.wait()
        return scheduler.tick(tx, catalog, CTX, now)

    return list(await asyncio.gather(first.write(work), second.write(work)))


async def status_history(store: Store, ident: str) -> list[HistoryEntry]:
    entries = await store.read(lambda tx: tx.history(ident))
    return [entry for entry in entries if entry.kind == "status"]


async def sends(store: Store, ident: str) -> list[PendingSend]:
    return await store.read(lambda tx: tx.pending_sends(ident, ALL, limit=1000))


def test_a_scheduled_start_is_recorded_once(postgres_url: str) -> None:
    text = automation("soon", "scheduled", extra="start_at: 2026-03-02T10:00:00Z\n")

    async def body(first: Store, second: Store) -> tuple[list[bool], list[HistoryEntry]]:
        await apply_on(first, files(text), T0)
        ticked = await tick_together(first, second, at("2026-03-02T10:00:05"))
        return ticked, await status_history(second, "soon")

    ticked, history = on_two_replicas(postgres_url, body)
    assert sorted(ticked) == [False, True]
    assert [(e.value, e.at) for e in history] == [
        ("scheduled", T0),
        ("running", at("2026-03-02T10:00")),
    ]


def test_a_stop_at_stop_is_recorded_once(postgres_url: str) -> None:
    text = automation("promo", extra="stop_at: 2026-03-03T00:00:00Z\n")

    async def body(first: Store, second: Store) -> tuple[list[bool], list[str]]:
        await apply_on(first, files(text), T0)
        ticked = await tick_together(first, second, at("2026-03-03T00:00:01"))
        return ticked, [str(e.value) for e in await status_history(first, "promo")]

    ticked, values = on_two_replicas(postgres_url, body)
    assert sorted(ticked) == [False, True]
    assert values == ["running", "stopped"]


def test_a_cron_tick_creates_each_send_once(postgres_url: str) -> None:
    text = automation("daily", trigger="{type: schedule, cron: '0 9 * * *'}")
    emails = [f"s{n}@example.com" for n in range(5)]

    async def body(first: Store, second: Store) -> list[PendingSend]:
        await apply_on(first, files(text), T0)
        await subscribe(first, *emails)
        await tick_together(first, second, at("2026-03-02T09:00:30"))
        await tick_together(second, first, at("2026-03-02T09:01:00"))
        return await sends(first, "daily")

    found = on_two_replicas(postgres_url, body)
    assert Counter(send.email for send in found) == dict.fromkeys(emails, 1)
    assert {send.trigger_at for send in found} == {at("2026-03-02T09:00")}


def test_a_date_firing_happens_once(postgres_url: str) -> None:
    trigger = "{type: date, field: subscriber.fields.birthday}"
    text = automation("bday", trigger=trigger)

    async def body(first: Store, second: Store) -> list[PendingSend]:
        await apply_on(first, files(text), T0)
        await subscribe(first, "ann@example.com", "bob@example.com", birthday="03-05")
        await tick_together(first, second, at("2026-03-05T09:00:30"))
        await tick_together(second, first, at("2026-03-05T09:05:00"))
        return await sends(first, "bday")

    found = on_two_replicas(postgres_url, body)
    assert sorted(send.email for send in found) == ["ann@example.com", "bob@example.com"]
    assert {send.trigger_at for send in found} == {at("2026-03-05T09:00")}


def test_two_replicas_apply_the_same_change_once(postgres_url: str) -> None:
    old = automation("welcome", "draft", subject="Hi")
    new = automation("welcome", "running", subject="Hello")
    now = T0.replace(hour=9)

    async def body(first: Store, second: Store) -> tuple[list[ApplyReport], list[HistoryEntry]]:
        await apply_on(first, files(old), T0)
        tree = tree_of(files(new), now)
        barrier = threading.Barrier(2, timeout=20)

        def work(tx: WriteTx) -> ApplyReport:
            barrier.wait()  # both transactions are open before either plans
            return apply_files(tx, tree, now, "c2")

        reports = await asyncio.gather(first.write(work), second.write(work))
        return list(reports), await first.read(lambda tx: tx.history("welcome"))

    reports, history = on_two_replicas(postgres_url, body)
    assert sorted(len(report.applied) for report in reports) == [0, 1]
    assert [(e.kind, e.commit) for e in history if e.commit == "c2"] == [
        ("definition", "c2"),
        ("status", "c2"),
    ]
    assert [e.value for e in history if e.kind == "status"] == ["draft", "running"]


def test_a_plan_whose_row_moved_is_not_applied(tmp_path: Path) -> None:
    """The compare-and-set without the lock's help: a plan made in one transaction and
    executed in another, after the row changed, leaves that automation alone."""
    first = automation("welcome", "draft", subject="Hi")
    second = automation("welcome", "draft", subject="Hello")
    third = automation("welcome", "draft", subject="Hey")

    async def main() -> tuple[ApplyReport, str]:
        store = open_store(f"sqlite:///{tmp_path / 'pw.db'}", FakeClock(T0))
        try:
            await apply_on(store, files(first), T0)
            tree = tree_of(files(second), T0)
            plan = await store.write(
                lambda tx: plan_files(tx, tree, T0, versions=AppliedVersions())
            )
            await apply_on(store, files(third), T0)
            report = await store.write(lambda tx: execute(tx, plan, T0, "late"))
            row = await store.read(lambda tx: tx.automation("welcome"))
            assert row is not None
            return report, row.source
        finally:
            await store.close()

    report, source = asyncio.run(main())
    assert (report.applied, report.moved) == ([], ["welcome"])
    assert source == third


def shared_limiter(store: Store, clock: FakeClock, rate: str = "3/s") -> SharedRateLimiter:
    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return SharedRateLimiter(
        rate, "outbox", store, clock, monotonic=lambda: clock.now().timestamp(), sleep=sleep
    )


def test_a_shared_rate_limit_holds_across_replicas(postgres_url: str) -> None:
    async def main() -> tuple[list[bool], list[bool], list[bool]]:
        clock = FakeClock(T0)
        first, second = PostgresStore(postgres_url, clock), PostgresStore(postgres_url, clock)
        try:
            limiters = [shared_limiter(first, clock), shared_limiter(second, clock)]
            attempts = [limiter.acquire(0.0) for limiter in limiters * 3]
            burst = list(await asyncio.gather(*attempts))
            clock.advance(timedelta(seconds=1))
            later = [await limiter.acquire(0.0) for limiter in reversed(limiters * 2)]
            waited = [await limiters[0].acquire(5.0)]  # this window is full: waits for the next
            return burst, later, waited
        finally:
            await first.close()
            await second.close()

    burst, later, waited = asyncio.run(main())
    assert burst.count(True) == 3  # each replica's own bucket would have allowed 3
    assert later.count(True) == 3
    assert waited == [True]


def test_a_shared_limiter_gives_up_within_max_wait(tmp_path: Path) -> None:
    async def main() -> tuple[bool, bool, datetime]:
        clock = FakeClock(T0.replace(microsecond=500_000))
        store = open_store(f"sqlite:///{tmp_path / 'pw.db'}", clock)
        try:
            one, other = shared_limiter(store, clock, "1/m"), shared_limiter(store, clock, "1/m")
            first = await one.acquire(0.0)
            refused = await other.acquire(10.0)  # its own bucket is full; the next window: 59.5 s
            return first, refused, clock.now()
        finally:
            await store.close()

    first, refused, when = asyncio.run(main())
    assert (first, refused) == (True, False)
    assert when < T0 + timedelta(seconds=11)


def test_replicas_on_postgresql_share_provider_rate_limits(
    postgres_url: str, tmp_path: Path
) -> None:
    from runner.cli.settings import load_settings
    from runner.server.app import build_worker

    (tmp_path / "automations").mkdir()
    (tmp_path / "postwright.yaml").write_text(
        "providers:\n  mail:\n    type: resend\n    api_key_env: RESEND_KEY\n    rate_limit: 5/s\n"
    )
    environ = {"POSTWRIGHT_DATABASE_URL": postgres_url, "RESEND_KEY": "re_test"}
    settings = load_settings(tmp_path, environ)

    async def main() -> object:
        store = open_store(settings.database_url, FakeClock(T0))
        try:
            worker = await build_worker(settings, store, FakeClock(T0))
            limiter = worker.providers.limiters["mail"]
            await worker.providers.aclose()
            return limiter
        finally:
            await store.close()

    assert isinstance(asyncio.run(main()), SharedRateLimiter)
