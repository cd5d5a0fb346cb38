"""The store contract, continued: catching up with received events, the subscribers API
(listing, a person's sends, messages and lifted suppressions) and erasure's rewrites.

Run with `CONTRACT` by tests/test_store_sqlite.py and tests/test_store_postgres.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from runner.core.clock import FakeClock
from runner.core.records import SendStatus, Subscriber, SubscriberQuery, SuppressionLift
from runner.store.base import Store, WriteTx
from tests.store_contract import START, Check, event, feedback, message, seed, send


async def check_suppression_source_and_erasure_mark_round_trip(
    store: Store, clock: FakeClock
) -> None:
    (ann,) = await seed(store, "ann@example.com")
    found = await store.read(lambda tx: tx.subscriber_by_id(ann))
    assert found is not None and found.suppressed_source is None and found.erased_at is None
    source = {"kind": "provider_webhook", "provider": "default", "event_id": "ev-1"}
    changed = dataclasses.replace(
        found, suppressed="bounced", suppressed_at=START, suppressed_source=source
    )
    await store.write(lambda tx: tx.save_subscriber(changed))
    assert await store.read(lambda tx: tx.subscriber_by_id(ann)) == changed
    gone = dataclasses.replace(changed, email="deleted:x:1", deleted_at=START, erased_at=START)
    await store.write(lambda tx: tx.save_subscriber(gone))
    assert await store.read(lambda tx: tx.subscriber_by_id(ann)) == gone


async def check_catching_up_with_received_events(store: Store, clock: FakeClock) -> None:
    assert await store.read(lambda tx: tx.last_event_seq()) == 0
    assert await store.read(lambda tx: tx.has_unprocessed(10)) is False
    assert await store.read(lambda tx: tx.unprocessed_count()) == 0
    await store.ingest([event("e1"), event("e2")])
    first, second = await store.write(lambda tx: tx.unprocessed_events(10))
    assert await store.read(lambda tx: tx.unprocessed_count()) == 2
    assert await store.read(lambda tx: tx.last_event_seq()) == second.seq
    assert await store.read(lambda tx: tx.has_unprocessed(first.seq)) is True
    await store.write(lambda tx: tx.mark_processed([first.seq]))
    assert await store.read(lambda tx: tx.has_unprocessed(first.seq)) is False
    assert await store.read(lambda tx: tx.unprocessed_count()) == 1
    assert await store.read(lambda tx: tx.has_unprocessed(second.seq)) is True
    found = await store.read(lambda tx: tx.event_by_id("e2"))
    assert found is not None and found.seq == second.seq and found.type == "signup"
    assert await store.read(lambda tx: tx.event_by_id("nope")) is None


async def check_try_lock_engine_in_a_lone_transaction(store: Store, clock: FakeClock) -> None:
    def work(tx: WriteTx) -> bool:
        taken = tx.try_lock_engine()
        tx.lock_engine()  # taking it again in the same transaction never waits
        return taken

    assert await store.write(work) is True


async def check_subscribers_are_listed_by_filters_and_pages(store: Store, clock: FakeClock) -> None:
    ids = await seed(store, "a@x.io", "b@x.io", "c@x.io", "d@x.io", "e@x.io")

    def shape(tx: WriteTx) -> None:
        for ident, groups, suppressed, deleted in (
            (ids[0], {"vip", "news"}, None, None),
            (ids[1], {"news"}, "bounced", None),
            (ids[2], {"vip"}, "unsubscribed", None),
            (ids[3], set(), None, None),
            (ids[4], {"vip"}, None, START),
        ):
            person = tx.subscriber_by_id(ident)
            assert person is not None
            person.groups, person.suppressed, person.deleted_at = groups, suppressed, deleted
            tx.save_subscriber(person)

    await store.write(shape)

    async def emails(query: SubscriberQuery) -> list[str]:
        return [s.email for s in await store.read(lambda tx: tx.list_subscribers(query))]

    assert await emails(SubscriberQuery()) == ["a@x.io", "b@x.io", "c@x.io", "d@x.io"]
    assert await emails(SubscriberQuery(after_id=ids[0], limit=2)) == ["b@x.io", "c@x.io"]
    assert await emails(SubscriberQuery(suppressed=True)) == ["b@x.io", "c@x.io"]
    assert await emails(SubscriberQuery(suppressed=False)) == ["a@x.io", "d@x.io"]
    assert await emails(SubscriberQuery(reason="unsubscribed")) == ["c@x.io"]
    assert await emails(SubscriberQuery(group="vip")) == ["a@x.io", "c@x.io"]
    assert await emails(SubscriberQuery(group="vi")) == []
    assert await emails(SubscriberQuery(group="news", suppressed=False)) == ["a@x.io"]


async def check_subscribers_by_prefix(store: Store, clock: FakeClock) -> None:
    await seed(store, "deleted:abc:1", "deleted:abc:12", "deleted:abd:3", "deleted:ab", "z@x.io")
    found = await store.read(lambda tx: tx.subscribers_by_prefix("deleted:abc:"))
    assert [s.email for s in found] == ["deleted:abc:1", "deleted:abc:12"]
    assert await store.read(lambda tx: tx.subscribers_by_prefix("nothing:")) == []


async def check_subscribers_by_emails(store: Store, clock: FakeClock) -> None:
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")
    wanted = ["bob@example.com", "ann@example.com", "nobody@example.com", "ann@example.com"]
    found = await store.read(lambda tx: tx.subscribers_by_emails(wanted))
    assert {email: s.id for email, s in found.items()} == {
        "ann@example.com": ann,
        "bob@example.com": bob,
    }
    assert found["ann@example.com"] == await store.read(lambda tx: tx.subscriber_by_id(ann))
    assert await store.read(lambda tx: tx.subscribers_by_emails([])) == {}


async def check_events_of_one_email(store: Store, clock: FakeClock) -> None:
    await store.ingest([event("e1"), event("e2", email="bob@example.com"), event("e3")])
    await store.write(lambda tx: tx.add_event("subscriber.added", "ANN@example.com", {}, START))
    found = await store.read(lambda tx: tx.events_of(" Ann@Example.com"))
    assert [(e.id, e.type) for e in found] == [
        ("e1", "signup"),
        ("e3", "signup"),
        (None, "subscriber.added"),
    ]


async def check_sends_and_messages_of_subscribers(store: Store, clock: FakeClock) -> None:
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")
    minute = timedelta(minutes=1)

    def work(tx: WriteTx) -> None:
        tx.insert_pending(send("s1", ann, status=SendStatus.SENT))
        tx.insert_pending(send("s2", ann, START + minute, status=SendStatus.CANCELLED))
        tx.insert_pending(send("s3", bob))
        tx.insert_message(message("m1", "s1", ann, START))
        tx.insert_message(message("m2", "s1", ann, START + minute))
        tx.insert_message(message("m3", "s3", bob, START + 2 * minute))

    await store.write(work)
    sends = await store.read(lambda tx: tx.subscriber_sends([ann]))
    assert sorted(s.id for s in sends) == ["s1", "s2"]
    both = await store.read(lambda tx: tx.subscriber_sends([ann, bob]))
    assert sorted(s.id for s in both) == ["s1", "s2", "s3"]
    assert await store.read(lambda tx: tx.subscriber_sends([])) == []
    newest = await store.read(lambda tx: tx.subscriber_messages([ann], 1))
    assert [m.id for m in newest] == ["m2"]
    every = await store.read(lambda tx: tx.subscriber_messages([ann, bob]))
    assert [m.id for m in every] == ["m3", "m2", "m1"]


async def check_suppression_lifts_and_their_notes(store: Store, clock: FakeClock) -> None:
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")
    source = {"kind": "provider_webhook", "event_id": "ev-1"}
    first = SuppressionLift(ann, START, "bounced", START - timedelta(1), source, "me", "fixed")
    second = SuppressionLift(ann, START + timedelta(1), "complained", None, None, "you")
    other = SuppressionLift(bob, START, "bounced", None, None, "me", "bob's note")

    def work(tx: WriteTx) -> None:
        for lift in (first, second, other):
            tx.add_suppression_lift(lift)

    await store.write(work)
    assert await store.read(lambda tx: tx.suppression_lifts(ann)) == [first, second]
    assert await store.write(lambda tx: tx.clear_lift_notes([ann])) == 1
    kept = await store.read(lambda tx: tx.suppression_lifts(ann))
    assert [lift.note for lift in kept] == [None, None]
    assert kept[0].lifted_by == "me" and kept[0].source == source
    assert [lift.note for lift in await store.read(lambda tx: tx.suppression_lifts(bob))] == [
        "bob's note"
    ]


async def check_erasure_rewrites(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await store.ingest([event("e1"), event("e2")])

    def setup(tx: WriteTx) -> None:
        tx.insert_pending(send("s1", ann, status=SendStatus.SENT))
        tx.insert_message(message("m1", "s1", ann))
        tx.insert_message_event(feedback("p1", "m1", "clicked"))

    await store.write(setup)
    first, second = await store.write(lambda tx: tx.unprocessed_events(10))
    renamed = dataclasses.replace(
        first, id="erased:1", email="deleted:x", fields=None, groups=None, data={}
    )
    blanked = dataclasses.replace(second, email="deleted:x", data={})
    sent = await store.read(lambda tx: tx.pending_send("s1"))
    assert sent is not None
    sent = dataclasses.replace(
        sent, email="deleted:x:1", trigger_event={"name": "signup"}, overrides={}, last_error=None
    )
    mail = dataclasses.replace(
        message("m1", "s1", ann), to="deleted:x:1", subject="(erased)", html=None, text=None
    )
    mail = dataclasses.replace(mail, headers={})
    click = dataclasses.replace(feedback("p1", "m1", "clicked"), url=None)

    def rewrite(tx: WriteTx) -> None:
        tx.rewrite_events([renamed, blanked])
        tx.rewrite_sends([sent])
        tx.rewrite_messages([mail])
        tx.rewrite_message_events([click])

    await store.write(rewrite)
    assert await store.read(lambda tx: tx.events_of("ann@example.com")) == []
    found = await store.read(lambda tx: tx.events_of("deleted:x"))
    assert found == [renamed, blanked]
    # The remembered id follows its event: the old id is free, the new one a duplicate.
    assert await store.read(lambda tx: tx.event_by_id("e1")) is None
    assert await store.read(lambda tx: tx.event_by_id("erased:1")) == renamed
    assert await store.ingest([event("erased:1"), event("e2")]) == ["duplicate", "duplicate"]
    assert await store.read(lambda tx: tx.pending_send("s1")) == sent
    assert await store.read(lambda tx: tx.message("m1")) == mail
    assert await store.read(lambda tx: tx.message_events("m1")) == [click]
    # Counts are untouched.
    stats = await store.read(lambda tx: tx.stats("welcome"))
    assert (stats.sent, stats.clicked) == (1, 1)


async def check_old_copies_can_be_dropped(store: Store, clock: FakeClock) -> None:
    await seed(store, "ann@example.com")
    await store.write(lambda tx: tx.save_subscriber(Subscriber(id=None, email="bob@x.io")))
    assert await store.drop_old_copies() is True


PEOPLE_CONTRACT: list[Check] = [
    check_suppression_source_and_erasure_mark_round_trip,
    check_catching_up_with_received_events,
    check_try_lock_engine_in_a_lone_transaction,
    check_subscribers_are_listed_by_filters_and_pages,
    check_subscribers_by_prefix,
    check_subscribers_by_emails,
    check_events_of_one_email,
    check_sends_and_messages_of_subscribers,
    check_suppression_lifts_and_their_notes,
    check_erasure_rewrites,
    check_old_copies_can_be_dropped,
]
