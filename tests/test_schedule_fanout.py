"""A schedule firing over many subscribers: pages read with the audience's plain comparisons
tested in SQL, entries and sends written per page, and ticks that ask for the next one while
a sweep is unfinished (a real SQLite store; the worker with a fake clock)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runner.core.clock import FakeClock
from runner.core.conditions import evaluate
from runner.core.records import SendStatus, Subscriber
from runner.engine import cursors, scheduler
from runner.engine.catalog import Catalog
from runner.engine.context import new_ids
from runner.engine.worker import Worker
from runner.providers import Providers
from runner.store.base import WriteTx
from tests.test_apply import Db, db
from tests.test_scheduler import CTX, at, fired, start

__all__ = ["db"]

DAILY = "{type: schedule, cron: '0 9 * * *'}"
NINE = at("2026-03-02T09:00")
PLANS: list[Any] = [
    "pro",
    "free",
    "5",
    5,
    {"x": "pro"},
    "pro",
    "Pro",
    None,
    "2026-01-01",
    "pro\x00",
]


def run_tick(db: Db, when: str, budget: int, seconds: float | None = None) -> Any:
    def work(tx: Any) -> scheduler.TickResult:
        catalog = Catalog.build(tx.automations(), tx.status_changes())
        return scheduler.run_tick(tx, catalog, CTX, at(when), budget=budget, seconds=seconds)

    return db.write(work)


def people(db: Db, count: int) -> list[Subscriber]:
    """Subscribers with every kind of `plan` value; a few deleted or suppressed."""
    saved = []
    for n in range(count):
        person = db.subscriber(f"s{n:03d}@x.io", plan=PLANS[n % len(PLANS)], groups=["g"])
        if n % 7 == 3:
            person.suppressed = "unsubscribed"
        if n % 11 == 4:
            person.deleted_at = NINE
        saved.append(save(db, person))
    return saved


def save(db: Db, person: Subscriber) -> Subscriber:
    def work(tx: WriteTx) -> Subscriber:
        return tx.save_subscriber(person)

    return db.write(work)


def entered(db: Db, person: Subscriber) -> bool:
    assert person.id is not None
    ident = person.id
    return db.read(lambda tx: tx.entry("daily", ident)) is not None


def expected(audience_text: str, saved: list[Subscriber], db: Db) -> list[tuple[str, Any]]:
    """Who the old way (every subscriber, the audience in Python) would enter."""
    live = db.catalog().by_id["daily"]
    assert live.model.audience is not None, audience_text
    chosen = []
    for person in saved:
        if person.suppressed is not None or person.deleted_at is not None:
            continue
        groups = sorted(person.groups)
        context = {"subscriber": {"email": person.email, "fields": person.fields, "groups": groups}}
        if evaluate(live.model.audience, context):
            chosen.append((person.email, NINE))
    assert chosen
    return chosen


@pytest.mark.parametrize(
    "audience",
    [
        "{field: subscriber.fields.plan, op: eq, value: pro}",
        "{field: subscriber.fields.plan, op: in, value: [pro, '5']}",
        "{field: subscriber.fields.plan, op: eq, value: '2026-01-01T00:00:00Z'}",
        "{all: [{in_group: g}, {field: subscriber.fields.plan, op: eq, value: free}]}",
        "{field: subscriber.fields.plan, op: ne, value: pro}",
    ],
)
def test_the_audience_in_sql_enters_the_same_subscribers_once(
    db: Db, audience: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cursors, "SCAN_WINDOW", 7)  # many windows, some without a match
    start(db, "daily", DAILY, at("2026-03-02T08:00"), extra=f"audience: {audience}\n")
    saved = people(db, 60)
    results = [run_tick(db, f"2026-03-02T09:00:{s:02d}", budget=4) for s in range(1, 40)]
    assert results[-1].more is False and results[0].more is True
    assert fired(db, "daily") == sorted(expected(audience, saved, db))
    assert sum(entered(db, person) for person in saved) == len(fired(db, "daily"))
    assert all(send.status is SendStatus.PENDING for send in db.sends("daily"))


def test_a_tick_reports_an_unfinished_sweep(db: Db) -> None:
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    people(db, 5)
    first = run_tick(db, "2026-03-02T09:00:01", budget=2)
    assert (first.changed, first.handled, first.more) == (False, 2, True)
    run_tick(db, "2026-03-02T09:00:02", budget=2)
    last = run_tick(db, "2026-03-02T09:00:03", budget=2)
    assert last.more is False
    assert run_tick(db, "2026-03-02T09:00:04", budget=2).handled == 0


def test_a_tick_past_its_time_still_reads_one_page(db: Db, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cursors, "PAGE", 2)
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    people(db, 5)
    result = run_tick(db, "2026-03-02T09:00:01", budget=100, seconds=0.0)
    assert result.handled == 2 and result.more is True
    assert run_tick(db, "2026-03-02T09:00:02", budget=100).more is False


def test_the_worker_keeps_ticking_while_a_sweep_is_unfinished(
    db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cursors, "PAGE", 3)
    monkeypatch.setattr(scheduler, "TICK_SECONDS", 0.0)  # one page per tick
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    saved = people(db, 20)
    worker = Worker(db.store, CTX, FakeClock(at("2026-03-02T09:00:01")), Providers({}))

    async def rounds() -> list[bool]:
        return [await worker.engine_round() for _ in range(12)]

    busy = asyncio.run(rounds())
    live = [p for p in saved if p.suppressed is None and p.deleted_at is None]
    assert busy[0] is True and busy[-1] is False
    assert len(fired(db, "daily")) == len(live)


def test_ids_of_a_batch_are_unique_and_sort_by_time() -> None:
    ids = new_ids(NINE, 1000)
    assert len(set(ids)) == 1000 and all(len(i) == 28 for i in ids)
    later = new_ids(at("2026-03-02T09:00:01"), 3)
    assert max(ids) < min(later)
