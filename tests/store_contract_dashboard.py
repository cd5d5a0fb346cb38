"""The store contract of the dashboard's reads: stats by revision with the commit and its
subject, stats per day, sends per day of several automations, top links.

Run with `CONTRACT` by tests/test_store_sqlite.py and tests/test_store_postgres.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from runner.core.clock import FakeClock
from runner.store.base import Store, WriteTx
from runner.store.dashboard_stats import MessageCounts
from tests.store_contract import START, Check, automation, feedback, message, seed, send


async def _two_revisions(store: Store) -> tuple[int, int]:
    """ "welcome" applied at revision 1 (commit abc123) and 2 (commit def456), one message of
    revision 1 and two of revision 2, with their provider events."""
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")

    def work(tx: WriteTx) -> None:
        tx.record_commit("abc123", "Welcome email")
        tx.record_commit("def456", "Shorter subject line")
        tx.record_commit("def456", "a later subject is ignored")
        later = START + timedelta(days=1)
        second = dataclasses.replace(automation(), revision=2, commit="def456", applied_at=later)
        tx.save_automation(second)
        # A status moment saves the row again at the same revision: its commit stays.
        tx.save_automation(dataclasses.replace(second, commit="fff999"))
        for sid, sub in (("s1", ann), ("s2", bob), ("s3", ann)):
            tx.insert_pending(send(sid, sub))
        tx.insert_message(message("m1", "s1", ann))
        tx.insert_message(dataclasses.replace(message("m2", "s2", bob, later), revision=2))
        m3 = message("m3", "s3", ann, later + timedelta(hours=1), provider_type="outbox")
        tx.insert_message(dataclasses.replace(m3, revision=2))
        for number, (message_id, kind) in enumerate(
            [("m1", "delivered"), ("m2", "opened"), ("m2", "opened"), ("m2", "clicked")]
        ):
            tx.insert_message_event(feedback(f"p{number}", message_id, kind))

    await store.write(work)
    return ann, bob


async def check_stats_by_revision(store: Store, clock: FakeClock) -> None:
    await _two_revisions(store)
    found = await store.read(lambda tx: tx.stats_by_revision("welcome"))
    assert [(r.revision, r.commit, r.subject) for r in found] == [
        (1, "abc123", "Welcome email"),
        (2, "def456", "Shorter subject line"),
    ]
    assert found[0].applied_at == START
    assert found[0].counts == MessageCounts(sent=1, delivered=1)
    # m2 delivered by its open, m3 by the outbox; m2 opened twice counts once.
    assert found[1].counts == MessageCounts(
        sent=2, delivered=2, opened=1, clicked=1, unique_openers=1, unique_clickers=1
    )
    assert (found[1].counts.open_rate, found[1].counts.click_rate) == (0.5, 0.5)
    assert found[0].counts.open_rate == 0.0
    assert await store.read(lambda tx: tx.stats_by_revision("nothing")) == []


async def check_stats_by_day_and_sends_per_day(store: Store, clock: FakeClock) -> None:
    await _two_revisions(store)
    days = await store.read(lambda tx: tx.stats_by_day("welcome", START))
    assert [(d.day, d.counts.sent, d.counts.opened) for d in days] == [
        ("2026-03-02", 1, 0),
        ("2026-03-03", 2, 1),
    ]
    later = await store.read(lambda tx: tx.stats_by_day("welcome", START + timedelta(hours=1)))
    assert [d.day for d in later] == ["2026-03-03"]
    per_day = await store.read(lambda tx: tx.sends_per_day(["welcome", "other"], START))
    assert per_day == {"welcome": {"2026-03-02": 1, "2026-03-03": 2}, "other": {}}
    since = START + timedelta(hours=1)
    recent = await store.read(lambda tx: tx.recent_counts(["welcome", "other"], since))
    assert recent == {
        "welcome": MessageCounts(
            sent=2, delivered=2, opened=1, clicked=1, unique_openers=1, unique_clickers=1
        ),
        "other": MessageCounts(),
    }


async def check_top_links(store: Store, clock: FakeClock) -> None:
    await _two_revisions(store)
    links = await store.read(lambda tx: tx.top_links("welcome"))
    assert links == [("https://example.com/x", 1)]
    assert await store.read(lambda tx: tx.top_links("other")) == []


async def check_opened_within_a_window(store: Store, clock: FakeClock) -> None:
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")
    day = timedelta(hours=24)

    def work(tx: WriteTx) -> None:
        for sid, sub in (("s1", ann), ("s2", bob), ("s3", ann)):
            tx.insert_pending(send(sid, sub))
            tx.insert_message(message(f"m{sid[1]}", sid, sub))
        # m1 opened after 23 h and after 1 h (the first counts), m2 clicked after 25 h, m3 never.
        for number, (message_id, kind, after) in enumerate(
            [("m1", "opened", 23), ("m1", "opened", 1), ("m2", "clicked", 25)]
        ):
            event = feedback(f"o{number}", message_id, kind)
            at = START + timedelta(hours=after)
            tx.insert_message_event(dataclasses.replace(event, occurred_at=at, received_at=at))

    await store.write(work)
    assert await store.read(lambda tx: tx.opened_within("welcome", day)) == 1
    assert await store.read(lambda tx: tx.opened_within("welcome", 2 * day)) == 2
    assert await store.read(lambda tx: tx.opened_within("other", day)) == 0


DASHBOARD_CONTRACT: list[Check] = [
    check_stats_by_revision,
    check_stats_by_day_and_sends_per_day,
    check_top_links,
    check_opened_within_a_window,
]
