"""The store contract: checks every `Store` must pass, written against the protocol only.

Each check is `async def check_...(store, clock)`; a test module per store runs `CONTRACT`
on a fresh, empty store whose clock is the given FakeClock (see tests/test_store_sqlite.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.core.clock import FakeClock
from runner.core.records import (
    AppliedAutomation,
    CancelReason,
    HistoryEntry,
    IncomingEvent,
    Message,
    MessageEvent,
    PendingSend,
    SendStatus,
    Subscriber,
)
from runner.store.base import Stats, Store, WriteTx
from runner.store.errors import EventConflict, StoreError

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACTIVE = (SendStatus.PENDING, SendStatus.CLAIMED)

Check = Callable[[Store, FakeClock], Awaitable[None]]


def event(event_id: str, body: str = "h", email: str = "ann@example.com") -> IncomingEvent:
    """A client event whose body hash is `body`."""
    return IncomingEvent(
        id=event_id,
        type="signup",
        email=email,
        fields={"plan": "pro"},
        groups=["news"],
        data={"n": 1},
        occurred_at=START - timedelta(minutes=1),
        body_hash=body,
    )


def automation(automation_id: str = "welcome", status: str = "running") -> AppliedAutomation:
    """An applied automation row."""
    return AppliedAutomation(
        id=automation_id,
        revision=1,
        status=status,
        source=f"id: {automation_id}\n",
        templates={"html_file": "<p>hi</p>"},
        path=f"automations/{automation_id}.yaml",
        commit="abc123",
        applied_at=START,
        started_at=START,
        stopped_at=None,
    )


def send(
    send_id: str,
    subscriber_id: int,
    due_at: datetime = START,
    *,
    automation_id: str = "welcome",
    status: SendStatus = SendStatus.PENDING,
    repeat_index: int = 0,
    reason: str | None = None,
) -> PendingSend:
    """A pending send of `automation_id`."""
    return PendingSend(
        id=send_id,
        automation_id=automation_id,
        subscriber_id=subscriber_id,
        email="ann@example.com",
        due_at=due_at,
        status=status,
        trigger_at=START,
        trigger_event={"name": "signup", "data": {"n": 1}},
        created_at=START,
        series_id=send_id,
        repeat_index=repeat_index,
        overrides={"plan": "max"},
        reason=reason,
    )


def message(
    message_id: str,
    send_id: str,
    subscriber_id: int,
    sent_at: datetime = START,
    *,
    automation_id: str = "welcome",
    provider_type: str = "postmark",
) -> Message:
    """A message handed to a provider."""
    return Message(
        id=message_id,
        pending_send_id=send_id,
        automation_id=automation_id,
        subscriber_id=subscriber_id,
        to="ann@example.com",
        from_="shop@example.com",
        subject="Hi",
        html="<p>hi</p>",
        text="hi",
        headers={"List-Unsubscribe": "<https://x/u/t>"},
        provider="default",
        provider_type=provider_type,
        provider_message_id=f"p-{message_id}",
        sent_at=sent_at,
        revision=1,
        listeners=["follow-up"],
    )


def feedback(event_id: str, message_id: str, kind: str, bounce: str | None = None) -> MessageEvent:
    """A provider event about a message."""
    return MessageEvent(
        provider="default",
        provider_event_id=event_id,
        message_id=message_id,
        type=kind,
        occurred_at=START,
        received_at=START,
        url="https://example.com/x" if kind == "clicked" else None,
        bounce=bounce,
    )


async def seed(store: Store, *emails: str) -> list[int]:
    """Save the automation "welcome" and one subscriber per email; their ids."""

    def work(tx: WriteTx) -> list[int]:
        tx.save_automation(automation())
        ids = []
        for email in emails:
            saved = tx.save_subscriber(Subscriber(id=None, email=email, created_at=START))
            assert saved.id is not None
            ids.append(saved.id)
        return ids

    return await store.write(work)


async def insert(store: Store, *sends: PendingSend) -> None:
    """Insert pending sends in one transaction."""

    def work(tx: WriteTx) -> None:
        for one in sends:
            tx.insert_pending(one)

    await store.write(work)


async def read_send(store: Store, send_id: str) -> PendingSend | None:
    """One pending send, read in its own transaction."""
    return await store.read(lambda tx: tx.pending_send(send_id))


# Ingestion -------------------------------------------------------------------------------


async def check_ingest_stores_then_acknowledges_duplicates(store: Store, clock: FakeClock) -> None:
    assert await store.ingest([event("e1"), event("e2")]) == ["stored", "stored"]
    clock.advance(timedelta(seconds=5))
    assert await store.ingest([event("e1"), event("e3")]) == ["duplicate", "stored"]
    stored = await store.write(lambda tx: tx.unprocessed_events(10))
    assert [e.id for e in stored] == ["e1", "e2", "e3"]
    assert stored[0].received_at == START
    assert stored[2].received_at == START + timedelta(seconds=5)
    assert stored[0].fields == {"plan": "pro"} and stored[0].groups == ["news"]
    assert stored[0].occurred_at == START - timedelta(minutes=1)
    assert stored[0].seq < stored[1].seq < stored[2].seq


async def check_ingest_normalises_the_email(store: Store, clock: FakeClock) -> None:
    await store.ingest([event("e1", email="  Ann@Example.COM ")])
    found = await store.read(
        lambda tx: tx.events_after("ANN@example.com", ["signup"], START - timedelta(1))
    )
    assert [e.email for e in found] == ["ann@example.com"]


async def check_conflict_stores_nothing_of_the_batch(store: Store, clock: FakeClock) -> None:
    await store.ingest([event("e1", body="one")])
    with pytest.raises(EventConflict) as raised:
        await store.ingest([event("e2"), event("e1", body="two")])
    assert raised.value.event_id == "e1"
    assert [e.id for e in await store.write(lambda tx: tx.unprocessed_events(10))] == ["e1"]
    assert await store.ingest([event("e2")]) == ["stored"]


async def check_conflict_does_not_fail_other_calls_of_a_group(
    store: Store, clock: FakeClock
) -> None:
    await store.ingest([event("e0", body="one")])
    calls = [store.ingest([event(f"e{i}")]) for i in range(1, 20)]
    calls.insert(10, store.ingest([event("e0", body="two")]))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[10], EventConflict)
    assert [r for i, r in enumerate(results) if i != 10] == [["stored"]] * 19
    stored = await store.write(lambda tx: tx.unprocessed_events(100))
    assert sorted(e.id or "" for e in stored) == sorted(f"e{i}" for i in range(20))


async def check_concurrent_ingests_are_all_stored(store: Store, clock: FakeClock) -> None:
    results = await asyncio.gather(*(store.ingest([event(f"c{i}")]) for i in range(50)))
    assert results == [["stored"]] * 50
    stored = await store.write(lambda tx: tx.unprocessed_events(100))
    assert len({e.seq for e in stored}) == 50
    assert {e.received_at for e in stored} == {START}


async def check_derived_events_and_processing(store: Store, clock: FakeClock) -> None:
    await store.ingest([event("e1")])

    def work(tx: WriteTx) -> list[str | None]:
        first = tx.unprocessed_events(10)[0]
        derived = tx.add_event(
            "subscriber.added", "Ann@example.com", {}, START, derived_from=first.seq
        )
        internal = tx.add_event(
            "email.opened", "ann@example.com", {"m": "x"}, START, processed=False
        )
        assert derived.derived_from == first.seq and derived.id is None
        assert internal.seq > derived.seq > first.seq
        tx.mark_processed([first.seq])
        return [e.type for e in tx.unprocessed_events(10)]

    assert await store.write(work) == ["email.opened"]
    after = await store.read(
        lambda tx: tx.events_after("ann@example.com", ["subscriber.added"], START - timedelta(1))
    )
    assert [e.email for e in after] == ["ann@example.com"]


async def check_events_after_is_strict_and_filters_types(store: Store, clock: FakeClock) -> None:
    await store.ingest([event("e1")])
    clock.advance(timedelta(minutes=1))
    await store.ingest([event("e2"), event("e3", email="bob@example.com")])
    await store.write(lambda tx: tx.add_event("unsubscribe", "ann@example.com", {}, clock.now()))
    found = await store.read(lambda tx: tx.events_after("ann@example.com", ["signup"], START))
    assert [e.id for e in found] == ["e2"]
    both = await store.read(
        lambda tx: tx.events_after("ann@example.com", ["signup", "unsubscribe"], START)
    )
    assert [e.type for e in both] == ["signup", "unsubscribe"]
    assert await store.read(lambda tx: tx.events_after("ann@example.com", [], START)) == []


# Transactions ----------------------------------------------------------------------------


async def check_write_rolls_back_when_work_raises(store: Store, clock: FakeClock) -> None:
    def work(tx: WriteTx) -> None:
        tx.set_meta("k", "v")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await store.write(work)
    assert await store.read(lambda tx: tx.meta("k")) is None
    await store.write(lambda tx: tx.set_meta("k", "v"))
    await store.write(lambda tx: tx.set_meta("k", "w"))
    assert await store.read(lambda tx: tx.meta("k")) == "w"


async def check_savepoint_undoes_only_its_block(store: Store, clock: FakeClock) -> None:
    def work(tx: WriteTx) -> None:
        tx.set_meta("before", "1")
        with tx.savepoint():
            tx.set_meta("kept", "1")
        with pytest.raises(RuntimeError, match="inner"):
            with tx.savepoint():
                tx.set_meta("outer", "1")
                with tx.savepoint():
                    tx.set_meta("inner-kept", "1")
                with pytest.raises(ValueError):
                    with tx.savepoint():
                        tx.set_meta("undone", "1")
                        raise ValueError("nested")
                assert tx.meta("undone") is None and tx.meta("outer") == "1"
                raise RuntimeError("inner")
        tx.set_meta("after", "1")

    await store.write(work)
    names = ["before", "kept", "outer", "inner-kept", "undone", "after"]
    found = await store.read(lambda tx: {name: tx.meta(name) for name in names})
    assert {name for name, value in found.items() if value} == {"before", "kept", "after"}


async def check_failed_events_are_marked_and_listed(store: Store, clock: FakeClock) -> None:
    await store.ingest([event("e1"), event("e2"), event("e3")])

    def work(tx: WriteTx) -> list[str | None]:
        first, second, _ = tx.unprocessed_events(10)
        tx.mark_failed(first.seq, "RuntimeError: boom")
        tx.mark_failed(second.seq, "KeyError: 'x'")
        return [e.id for e in tx.unprocessed_events(10)]

    assert await store.write(work) == ["e3"]
    failed = await store.read(lambda tx: tx.failed_events(10))
    assert [(e.id, e.error) for e in failed] == [
        ("e2", "KeyError: 'x'"),
        ("e1", "RuntimeError: boom"),
    ]
    assert [e.id for e in await store.read(lambda tx: tx.failed_events(1))] == ["e2"]
    found = await store.read(
        lambda tx: tx.events_after("ann@example.com", ["signup"], START - timedelta(1))
    )
    assert [e.error for e in found] == ["RuntimeError: boom", "KeyError: 'x'", None]


async def check_meta_is_set_and_deleted(store: Store, clock: FakeClock) -> None:
    await store.write(lambda tx: tx.set_meta("a", "1"))
    assert await store.write(lambda tx: tx.delete_meta("a")) is True
    assert await store.write(lambda tx: tx.delete_meta("a")) is False
    assert await store.read(lambda tx: tx.meta("a")) is None


async def check_old_claims_of_a_prefix_are_purged(store: Store, clock: FakeClock) -> None:
    old, recent = clock.now() - timedelta(hours=2), clock.now()

    def claim(tx: WriteTx) -> None:
        assert tx.claim_once("rate:mail:w1:0", old)
        assert tx.claim_once("rate:mail:w2:0", recent)
        assert tx.claim_once("cron:digest:t1", old)

    await store.write(claim)
    before = clock.now() - timedelta(hours=1)
    assert await store.write(lambda tx: tx.purge_claims("rate:", before)) == 1

    def again(tx: WriteTx) -> list[bool]:
        return [
            tx.claim_once("rate:mail:w1:0", recent),  # forgotten: claimable again
            tx.claim_once("rate:mail:w2:0", recent),  # too recent to forget
            tx.claim_once("cron:digest:t1", recent),  # another prefix is kept
        ]

    assert await store.write(again) == [True, False, False]


async def check_event_ids_are_purged_after_their_retention(store: Store, clock: FakeClock) -> None:
    await store.ingest([event("old")])
    clock.advance(timedelta(days=2))
    await store.ingest([event("new")])
    cutoff = START + timedelta(days=1)
    assert await store.write(lambda tx: tx.purge_event_ids(cutoff)) == 1
    assert await store.write(lambda tx: tx.purge_event_ids(cutoff)) == 0
    # A forgotten id is a new event (even with another body); a kept one is still a duplicate.
    assert await store.ingest([event("old", body="other"), event("new")]) == ["stored", "duplicate"]
    with pytest.raises(EventConflict):
        await store.ingest([event("new", body="other")])
    stored = await store.write(lambda tx: tx.unprocessed_events(10))
    assert [e.id for e in stored] == ["old", "new", "old"]


async def check_claim_once(store: Store, clock: FakeClock) -> None:
    assert await store.write(lambda tx: tx.claim_once("cron:a:1", START)) is True
    assert await store.write(lambda tx: tx.claim_once("cron:a:1", START)) is False
    assert await store.write(lambda tx: tx.claim_once("cron:a:2", START)) is True


# Subscribers and automations -------------------------------------------------------------


async def check_subscribers(store: Store, clock: FakeClock) -> None:
    ann, bob, cat = await seed(store, " Ann@Example.com", "bob@example.com", "cat@example.com")
    found = await store.read(lambda tx: tx.subscriber("ANN@example.com "))
    assert found is not None and found.id == ann and found.email == "ann@example.com"
    found.fields = {"plan": "pro"}
    found.groups = {"b", "a"}
    found.suppressed, found.suppressed_at = "bounced", START
    await store.write(lambda tx: tx.save_subscriber(found))
    again = await store.read(lambda tx: tx.subscriber_by_id(ann))
    assert again == found
    with pytest.raises(StoreError):
        await store.write(
            lambda tx: tx.save_subscriber(Subscriber(id=None, email="bob@example.com"))
        )
    deleted = Subscriber(id=bob, email="bob@example.com", deleted_at=START)
    await store.write(lambda tx: tx.save_subscriber(deleted))
    page = await store.read(lambda tx: tx.subscribers(0, 1))
    assert [s.id for s in page] == [ann]
    rest = await store.read(lambda tx: tx.subscribers(ann, 10))
    assert [s.id for s in rest] == [cat]
    assert await store.read(lambda tx: tx.subscriber("nobody@example.com")) is None
    # Several at once, deleted ones included, unknown ids left out.
    many = await store.read(lambda tx: tx.subscribers_by_ids([cat, ann, bob, 10**9, ann]))
    assert many == {
        ann: await store.read(lambda tx: tx.subscriber_by_id(ann)),
        bob: await store.read(lambda tx: tx.subscriber_by_id(bob)),
        cat: await store.read(lambda tx: tx.subscriber_by_id(cat)),
    }
    assert await store.read(lambda tx: tx.subscribers_by_ids([])) == {}


async def check_automations_and_history(store: Store, clock: FakeClock) -> None:
    def work(tx: WriteTx) -> None:
        tx.add_history(HistoryEntry("welcome", START, "status", None, "running", "c1"))
        tx.save_automation(automation())
        tx.save_automation(automation("other", "draft"))
        tx.add_history(
            HistoryEntry("welcome", START + timedelta(hours=1), "definition", {"a": 1}, {"a": 2})
        )
        tx.add_history(HistoryEntry("other", START - timedelta(hours=1), "status", None, "draft"))
        tx.add_history(
            HistoryEntry(
                "welcome", START + timedelta(hours=2), "status", "running", "paused", detail="x"
            )
        )

    await store.write(work)
    rows = await store.read(lambda tx: tx.automations())
    assert [a.id for a in rows] == ["other", "welcome"]
    assert rows[1] == automation()
    changed = AppliedAutomation(**{**automation().__dict__, "revision": 2, "status": "paused"})
    await store.write(lambda tx: tx.save_automation(changed))
    assert await store.read(lambda tx: tx.automation("welcome")) == changed
    assert await store.read(lambda tx: tx.automation("missing")) is None
    history = await store.read(lambda tx: tx.history("welcome"))
    assert [(h.kind, h.previous, h.value) for h in history] == [
        ("status", None, "running"),
        ("definition", {"a": 1}, {"a": 2}),
        ("status", "running", "paused"),
    ]
    assert history[0].commit == "c1" and history[2].detail == "x"
    statuses = await store.read(lambda tx: tx.status_changes())
    assert [(h.automation_id, h.value) for h in statuses] == [
        ("other", "draft"),
        ("welcome", "running"),
        ("welcome", "paused"),
    ]


async def check_entries(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    first = await store.write(lambda tx: tx.record_entry("welcome", ann, START))
    later = START + timedelta(days=1)
    second = await store.write(lambda tx: tx.record_entry("welcome", ann, later))
    assert (first.count, second.count) == (1, 2)
    assert (second.first_at, second.last_at) == (START, later)
    assert await store.read(lambda tx: tx.entry("welcome", ann)) == second
    assert await store.read(lambda tx: tx.entry("other", ann)) is None


# Pending sends ---------------------------------------------------------------------------


async def check_pending_sends_are_listed(store: Store, clock: FakeClock) -> None:
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")
    hour = timedelta(hours=1)

    def work(tx: WriteTx) -> None:
        tx.insert_pending(send("s2", ann, START + 2 * hour))
        tx.insert_pending(send("s1", ann, START + hour))
        tx.insert_pending(send("s1", bob, START + 5 * hour))  # a retried insert changes nothing
        tx.insert_pending(send("s3", bob, START, status=SendStatus.CANCELLED, reason="suppressed"))

    await store.write(work)
    one = await store.read(lambda tx: tx.pending_send("s1"))
    assert one == send("s1", ann, START + hour)
    listed = await store.read(lambda tx: tx.pending_sends("welcome", ACTIVE))
    assert [s.id for s in listed] == ["s1", "s2"]
    assert [s.id for s in await store.read(lambda tx: tx.pending_sends("welcome", ACTIVE, 1))] == [
        "s1"
    ]
    cancelled = await store.read(lambda tx: tx.pending_sends("welcome", [SendStatus.CANCELLED]))
    assert [(s.id, s.reason) for s in cancelled] == [("s3", "suppressed")]
    assert [s.id for s in await store.read(lambda tx: tx.active_sends(ann))] == ["s1", "s2"]
    assert await store.read(lambda tx: tx.active_sends(bob)) == []
    assert await store.read(lambda tx: tx.active_sends(ann, "other")) == []
    assert await store.read(lambda tx: tx.queue_depth()) == 2
    assert await store.read(lambda tx: tx.pending_send("nope")) is None


async def check_status_changes_are_guarded(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await insert(store, *(send(i, ann) for i in ("s1", "s2", "s3")))
    later = START + timedelta(minutes=1)
    cancelled = await store.write(
        lambda tx: tx.set_status(
            ["s1", "s2"], SendStatus.CANCELLED, later, from_statuses=ACTIVE, reason="paused"
        )
    )
    assert cancelled == 2
    again = await store.write(
        lambda tx: tx.set_status(["s1"], SendStatus.CANCELLED, later, from_statuses=ACTIVE)
    )
    assert again == 0
    revived = await store.write(
        lambda tx: tx.set_status(
            ["s1"], SendStatus.PENDING, later, from_statuses=[SendStatus.PENDING]
        )
    )
    assert revived == 0
    s1 = await store.read(lambda tx: tx.pending_send("s1"))
    assert s1 is not None and (s1.status, s1.reason, s1.updated_at) == (
        SendStatus.CANCELLED,
        "paused",
        later,
    )
    none = await store.write(
        lambda tx: tx.set_status([], SendStatus.SENT, later, from_statuses=ACTIVE)
    )
    assert none == 0


async def check_sent_never_goes_back_to_pending(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await store.write(lambda tx: tx.insert_pending(send("s1", ann)))
    claimed = await store.write(lambda tx: tx.claim_due(START, 10, START + timedelta(1), "t"))
    assert [s.id for s in claimed] == ["s1"]
    assert await store.write(lambda tx: tx.finish_claim("s1", "t", SendStatus.SENT, START)) is True
    back = await store.write(
        lambda tx: tx.set_status(["s1"], SendStatus.PENDING, START, from_statuses=ACTIVE)
    )
    assert back == 0
    assert await store.write(lambda tx: tx.reschedule("s1", START, START)) is False
    found = await store.read(lambda tx: tx.pending_send("s1"))
    assert found is not None and found.status is SendStatus.SENT and found.attempts == 1
    assert found.lease_token is None


async def check_claim_due_order_and_limit(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    minute = timedelta(minutes=1)

    def work(tx: WriteTx) -> None:
        tx.insert_pending(send("late", ann, START))
        tx.insert_pending(send("early", ann, START - 2 * minute))
        tx.insert_pending(send("middle", ann, START - minute))
        tx.insert_pending(send("future", ann, START + minute))
        tx.insert_pending(send("gone", ann, START - 3 * minute, status=SendStatus.CANCELLED))

    await store.write(work)
    lease = START + minute
    first = await store.write(lambda tx: tx.claim_due(START, 2, lease, "t1"))
    assert [s.id for s in first] == ["early", "middle"]
    assert all(s.status is SendStatus.CLAIMED for s in first)
    assert {(s.lease_token, s.lease_until) for s in first} == {("t1", lease)}
    second = await store.write(lambda tx: tx.claim_due(START, 10, lease, "t2"))
    assert [s.id for s in second] == ["late"]
    assert await store.write(lambda tx: tx.claim_due(START, 10, lease, "t3")) == []


async def check_expired_leases_are_resumed_and_fenced(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await store.write(lambda tx: tx.insert_pending(send("s1", ann)))
    minute = timedelta(minutes=1)
    await store.write(lambda tx: tx.claim_due(START, 1, START + minute, "old"))
    assert await store.write(lambda tx: tx.claim_due(START + minute, 1, START, "new")) == []
    later = START + 2 * minute
    resumed = await store.write(lambda tx: tx.claim_due(later, 1, later + minute, "new"))
    assert [(s.id, s.lease_token) for s in resumed] == [("s1", "new")]
    stale = await store.write(lambda tx: tx.finish_claim("s1", "old", SendStatus.SENT, later))
    assert stale is False
    stale_retry = await store.write(lambda tx: tx.retry_claim("s1", "old", later, later, "x"))
    assert stale_retry is False
    done = await store.write(
        lambda tx: tx.finish_claim("s1", "new", SendStatus.FAILED, later, last_error="550")
    )
    assert done is True
    found = await store.read(lambda tx: tx.pending_send("s1"))
    assert found is not None and (found.status, found.last_error) == (SendStatus.FAILED, "550")


async def check_retry_claim_and_reschedule(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await insert(store, *(send(i, ann) for i in ("s1", "s2", "s3")))
    lease = START + timedelta(minutes=1)
    await store.write(lambda tx: tx.claim_due(START, 2, lease, "t"))
    retry_at = START + timedelta(minutes=5)
    assert await store.write(lambda tx: tx.retry_claim("s1", "t", retry_at, START, "429")) is True
    s1 = await store.read(lambda tx: tx.pending_send("s1"))
    assert s1 is not None
    assert (s1.status, s1.due_at, s1.attempts, s1.last_error, s1.lease_token) == (
        SendStatus.PENDING,
        retry_at,
        1,
        "429",
        None,
    )
    window = START + timedelta(hours=8)
    assert await store.write(lambda tx: tx.reschedule("s2", window, START)) is False  # claimed
    assert await store.write(lambda tx: tx.reschedule("s2", window, START, token="x")) is False
    assert await store.write(lambda tx: tx.reschedule("s2", window, START, token="t")) is True
    assert await store.write(lambda tx: tx.reschedule("s3", window, START)) is True
    for send_id in ("s2", "s3"):
        found = await read_send(store, send_id)
        assert found is not None
        assert (found.status, found.due_at, found.attempts) == (SendStatus.PENDING, window, 0)
    cancel = await store.write(
        lambda tx: tx.finish_claim("s1", "t", SendStatus.CANCELLED, START, reason="paused")
    )
    assert cancel is False  # s1 is no longer claimed


async def check_in_flight_marks_are_fenced_kept_and_cleared(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await insert(store, *(send(i, ann) for i in ("s1", "s2", "s3")))
    minute = timedelta(minutes=1)
    await store.write(lambda tx: tx.claim_due(START, 3, START + minute, "t"))
    mark = {"provider": "pm", "message": {"headers": [["B", "2"], ["A", "1"]], "html": "é"}}
    marks = {"s1": mark, "s2": mark, "s3": mark, "nope": mark}
    assert await store.write(lambda tx: tx.mark_in_flight("other", marks)) == set()
    assert await store.write(lambda tx: tx.mark_in_flight("t", marks)) == {"s1", "s2", "s3"}
    s1 = await read_send(store, "s1")
    assert s1 is not None and s1.in_flight == mark  # round-trips as stored
    # An expired claim is resumed with its mark: the new sender sees the request went out.
    later = START + 2 * minute
    resumed = await store.write(lambda tx: tx.claim_due(later, 3, later + minute, "new"))
    assert [(s.id, s.in_flight) for s in resumed] == [("s1", mark), ("s2", mark), ("s3", mark)]
    assert await store.write(lambda tx: tx.mark_in_flight("t", {"s1": None})) == set()  # fenced
    # Ending a claim clears the mark; a retry sets what it must repeat; a put back keeps it.
    await store.write(lambda tx: tx.finish_claim("s1", "new", SendStatus.SENT, later))
    kept = {**mark, "carried": True}
    await store.write(lambda tx: tx.retry_claim("s2", "new", later, later, "x", in_flight=kept))
    await store.write(lambda tx: tx.reschedule("s3", later, later, token="new"))
    found = {
        s.id: s for s in await store.read(lambda tx: tx.pending_sends("welcome", set(SendStatus)))
    }
    assert (found["s1"].status, found["s1"].in_flight) == (SendStatus.SENT, None)
    assert (found["s2"].status, found["s2"].in_flight, found["s2"].attempts) == (
        SendStatus.PENDING,
        kept,
        1,
    )
    assert (found["s3"].status, found["s3"].in_flight) == (SendStatus.PENDING, mark)
    await store.write(lambda tx: tx.claim_due(later, 3, later + minute, "last"))
    assert await store.write(lambda tx: tx.mark_in_flight("last", {"s3": None})) == {"s3"}
    s3 = await read_send(store, "s3")
    assert s3 is not None and s3.in_flight is None


async def check_ending_sends_cancels_the_unsent_and_halts_those_in_flight(
    store: Store, clock: FakeClock
) -> None:
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")
    minute = timedelta(minutes=1)
    waiting = dataclasses.replace(send("retry", ann, START + minute), in_flight={"carried": True})
    sends = [send("unsent", ann), send("marked", ann), send("later", ann, START + minute)]
    await insert(store, *sends, waiting, send("bobs", bob))
    claimed = ["unsent", "marked", "bobs"]
    await store.write(lambda tx: tx.claim_sends(claimed, START, START + minute, "t"))
    marks: dict[str, dict[str, Any] | None] = {"marked": {"provider": "pm"}, "bobs": {}}
    await store.write(lambda tx: tx.mark_in_flight("t", marks))
    # One subscriber's sends: Bob's request in flight is halted, Ann's sends are untouched.
    deleted = CancelReason.DELETED_SUBSCRIBER
    assert await store.write(lambda tx: tx.end_subscriber_sends(bob, deleted, START)) == 0
    bobs = await read_send(store, "bobs")
    assert bobs is not None and (bobs.status, bobs.halted) == (SendStatus.CLAIMED, deleted)
    # A whole automation: cancelled unless in flight (unsent: claimed but not marked; later;
    # retry: pending with the request it would repeat); the first halt reason stays.
    stopped = CancelReason.STOPPED
    assert await store.write(lambda tx: tx.end_automation_sends("welcome", stopped, START)) == 3
    found = {
        s.id: s for s in await store.read(lambda tx: tx.pending_sends("welcome", set(SendStatus)))
    }
    for send_id in ("unsent", "later", "retry"):
        ended = found[send_id]
        assert (ended.status, ended.reason) == (SendStatus.CANCELLED, "stopped")
        assert (ended.lease_token, ended.in_flight, ended.halted) == (None, None, None)
    marked, bobs = found["marked"], found["bobs"]
    assert (marked.status, marked.halted, marked.lease_token) == (SendStatus.CLAIMED, stopped, "t")
    assert bobs.halted is deleted
    # The claim still ends normally when the provider answers, keeping why it was halted.
    assert await store.write(lambda tx: tx.finish_claim("marked", "t", SendStatus.SENT, START))
    done = await read_send(store, "marked")
    assert done is not None and (done.status, done.halted) == (SendStatus.SENT, stopped)


async def check_named_sends_are_claimed_like_due_ones(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    minute = timedelta(minutes=1)

    def work(tx: WriteTx) -> None:
        tx.insert_pending(send("due", ann, START))
        tx.insert_pending(send("held", ann, START))
        tx.insert_pending(send("future", ann, START + minute))
        tx.insert_pending(send("done", ann, START, status=SendStatus.SENT))

    await store.write(work)
    await store.write(lambda tx: tx.claim_sends(["held"], START, START + minute, "other"))
    every = ["due", "held", "future", "done", "missing"]
    got = await store.write(lambda tx: tx.claim_sends(every, START, START + minute, "t"))
    assert [(s.id, s.status, s.lease_token) for s in got] == [("due", SendStatus.CLAIMED, "t")]
    later = START + 2 * minute  # "held" expired: resumed like claim_due does
    again = await store.write(lambda tx: tx.claim_sends(every, later, later + minute, "t2"))
    assert sorted(s.id for s in again) == ["due", "future", "held"]
    assert await store.write(lambda tx: tx.claim_sends([], later, later, "t3")) == []


async def check_a_claim_ends_only_in_a_final_status(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await store.write(lambda tx: tx.insert_pending(send("s1", ann)))
    await store.write(lambda tx: tx.claim_due(START, 1, START + timedelta(minutes=1), "t"))

    def finish_in(to: SendStatus) -> Callable[[WriteTx], bool]:
        return lambda tx: tx.finish_claim("s1", "t", to, START)

    for status in (SendStatus.PENDING, SendStatus.CLAIMED):
        with pytest.raises(ValueError):
            await store.write(finish_in(status))
    found = await read_send(store, "s1")
    assert found is not None and (found.status, found.lease_token) == (SendStatus.CLAIMED, "t")


async def check_send_now_skips_the_window_of_pending_sends_only(
    store: Store, clock: FakeClock
) -> None:
    (ann,) = await seed(store, "ann@example.com")
    later = START + timedelta(days=1)
    await insert(
        store,
        send("s1", ann, later),
        send("s2", ann, START - timedelta(minutes=1)),
        send("s3", ann, later, status=SendStatus.SENT),
    )
    assert await read_send(store, "s1") == send("s1", ann, later)  # skip_window defaults off
    await store.write(lambda tx: tx.claim_due(START, 10, START + timedelta(minutes=1), "t"))
    now = START + timedelta(seconds=30)
    results = await store.write(lambda tx: [tx.send_now(i, now) for i in ("s1", "s2", "s3", "x")])
    assert results == [True, False, False, False]
    s1 = await read_send(store, "s1")
    assert s1 is not None
    assert (s1.status, s1.due_at, s1.updated_at, s1.skip_window) == (
        SendStatus.PENDING,
        now,
        now,
        True,
    )
    for other in ("s2", "s3"):
        found = await read_send(store, other)
        assert found is not None and found.skip_window is False
    flagged = dataclasses.replace(send("s4", ann), skip_window=True)
    await insert(store, flagged)
    assert await read_send(store, "s4") == flagged


# Messages and stats ----------------------------------------------------------------------


async def check_messages(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    minute = timedelta(minutes=1)

    def work(tx: WriteTx) -> None:
        tx.save_automation(automation("other"))
        tx.insert_pending(send("s1", ann, status=SendStatus.SENT))
        tx.insert_pending(send("s2", ann, automation_id="other", status=SendStatus.SENT))
        tx.insert_message(message("m1", "s1", ann, START))
        tx.insert_message(message("m2", "s1", ann, START + minute))
        tx.insert_message(message("m3", "s2", ann, START + 2 * minute, automation_id="other"))
        tx.insert_message(message("m1", "s2", ann, START + 3 * minute))  # retried: no change

    await store.write(work)
    assert await store.read(lambda tx: tx.message("m1")) == message("m1", "s1", ann, START)
    by_provider = await store.read(lambda tx: tx.message_by_provider_id("default", "p-m2"))
    assert by_provider is not None and by_provider.id == "m2"
    assert await store.read(lambda tx: tx.message_by_provider_id("other", "p-m2")) is None
    newest = await store.read(lambda tx: tx.messages(2))
    assert [m.id for m in newest] == ["m3", "m2"]
    assert [m.id for m in await store.read(lambda tx: tx.messages(10, "welcome"))] == ["m2", "m1"]
    between = await store.read(
        lambda tx: tx.messages_sent_between("welcome", START, START + minute)
    )
    assert [m.id for m in between] == ["m2"]
    await store.write(lambda tx: tx.set_message_status("m2", "bounced"))
    bounced = await store.read(lambda tx: tx.message("m2"))
    assert bounced is not None and bounced.status == "bounced"

    def events(tx: WriteTx) -> list[bool]:
        return [
            tx.insert_message_event(feedback("p1", "m1", "delivered")),
            tx.insert_message_event(feedback("p2", "m1", "clicked")),
            tx.insert_message_event(feedback("p1", "m2", "opened")),
        ]

    assert await store.write(events) == [True, True, False]
    found = await store.read(lambda tx: tx.message_events("m1"))
    assert [(e.provider_event_id, e.type, e.url) for e in found] == [
        ("p1", "delivered", None),
        ("p2", "clicked", "https://example.com/x"),
    ]
    with pytest.raises(StoreError):
        await store.write(lambda tx: tx.insert_message_event(feedback("p9", "missing", "opened")))


async def check_stats(store: Store, clock: FakeClock) -> None:
    ann, bob, cat = await seed(store, "ann@example.com", "bob@example.com", "cat@example.com")
    sent, cancelled = SendStatus.SENT, SendStatus.CANCELLED

    def work(tx: WriteTx) -> None:
        tx.save_automation(automation("other"))
        for sid, sub, status, repeat, reason in [
            ("s1", ann, sent, 0, None),
            ("s2", bob, sent, 0, None),
            ("s3", ann, sent, 1, None),
            ("s4", cat, cancelled, 0, "suppressed"),
            ("s5", cat, SendStatus.PENDING, 0, None),
            ("s6", bob, SendStatus.CLAIMED, 0, None),
            ("s7", cat, SendStatus.FAILED, 0, None),
            ("s8", cat, SendStatus.OUTCOME_UNKNOWN, 0, None),
            ("s9", ann, cancelled, 1, "paused"),
        ]:
            tx.insert_pending(send(sid, sub, status=status, repeat_index=repeat, reason=reason))
            if repeat == 0:  # `triggered` counts accepted triggers: the entries
                tx.record_entry("welcome", sub, clock.now())
        tx.insert_pending(send("x1", ann, automation_id="other", status=sent))
        tx.record_entry("other", ann, clock.now())
        tx.insert_message(message("m1", "s1", ann))
        tx.insert_message(message("m2", "s2", bob))
        tx.insert_message(message("m3", "s3", ann, provider_type="outbox"))
        tx.insert_message(message("m5", "s2", cat))
        tx.insert_message(message("x", "x1", bob, automation_id="other"))
        # A failure before the outbox stored it: not delivered.
        tx.insert_message(
            dataclasses.replace(message("m7", "s7", cat, provider_type="outbox"), status="failed")
        )
        for number, (message_id, kind, bounce) in enumerate(
            [
                ("m1", "delivered", None),
                ("m1", "opened", None),
                ("m1", "opened", None),
                ("m1", "clicked", None),
                ("m2", "bounced", "hard"),
                ("m2", "complained", None),
                ("m3", "clicked", None),
                ("m5", "bounced", "soft"),
                ("m5", "unsubscribed", None),
                ("x", "opened", None),
            ]
        ):
            tx.insert_message_event(feedback(f"p{number}", message_id, kind, bounce))

    await store.write(work)
    stats = await store.read(lambda tx: tx.stats("welcome"))
    assert stats == Stats(
        triggered=7,
        pending=2,
        sent=3,
        delivered=2,
        opened=2,
        clicked=2,
        unique_openers=1,
        unique_clickers=1,
        bounced_hard=1,
        bounced_soft=1,
        complained=1,
        unsubscribed=1,
        failed=1,
        outcome_unknown=1,
        cancelled={"suppressed": 1, "paused": 1},
    )
    assert stats.open_rate == 1.0
    assert await store.read(lambda tx: tx.stats("nothing")) == Stats()


CONTRACT: list[Check] = [
    check_ingest_stores_then_acknowledges_duplicates,
    check_ingest_normalises_the_email,
    check_conflict_stores_nothing_of_the_batch,
    check_conflict_does_not_fail_other_calls_of_a_group,
    check_concurrent_ingests_are_all_stored,
    check_derived_events_and_processing,
    check_events_after_is_strict_and_filters_types,
    check_write_rolls_back_when_work_raises,
    check_savepoint_undoes_only_its_block,
    check_failed_events_are_marked_and_listed,
    check_meta_is_set_and_deleted,
    check_event_ids_are_purged_after_their_retention,
    check_old_claims_of_a_prefix_are_purged,
    check_claim_once,
    check_subscribers,
    check_automations_and_history,
    check_entries,
    check_pending_sends_are_listed,
    check_status_changes_are_guarded,
    check_sent_never_goes_back_to_pending,
    check_claim_due_order_and_limit,
    check_expired_leases_are_resumed_and_fenced,
    check_retry_claim_and_reschedule,
    check_a_claim_ends_only_in_a_final_status,
    check_in_flight_marks_are_fenced_kept_and_cleared,
    check_ending_sends_cancels_the_unsent_and_halts_those_in_flight,
    check_named_sends_are_claimed_like_due_ones,
    check_send_now_skips_the_window_of_pending_sends_only,
    check_messages,
    check_stats,
]
