"""The store contract, continued: the pages of a date or schedule firing's sweep (SQL tests of
an audience's plain comparisons) and the batched writes of its entries and pending sends.

Run with `CONTRACT` by tests/test_store_sqlite.py and tests/test_store_postgres.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from runner.core.clock import FakeClock
from runner.core.prefilter import FieldIn, InGroup, Prefilter
from runner.core.records import SendStatus
from runner.store.base import Store, WriteTx
from tests.store_contract import START, Check, read_send, seed, send

# Field values of the subscribers below, one each; what `plan` tests must find or may pass.
PLANS: list[Any] = [
    "pro",  # a: matches
    "free",  # b
    5,  # c: a number is never the string "5" for an audience; SQL may still pass it
    {"tier": "pro"},  # d: nested object
    "pro ",  # e: trailing space
    "Pro",  # f: case differs
    "pr\u00f6",  # g: not ASCII
    "pro",  # h: matches, but deleted
    "pro",  # i: matches, but suppressed
    None,  # j: null
]


async def _people(store: Store) -> list[int]:
    emails = [f"{chr(ord('a') + n)}@x.io" for n in range(len(PLANS))]
    ids = await seed(store, *emails)

    def shape(tx: WriteTx) -> None:
        for n, ident in enumerate(ids):
            person = tx.subscriber_by_id(ident)
            assert person is not None
            person.fields = {"plan": PLANS[n], "name": f"n{n}", "deep": {"plan": PLANS[n]}}
            person.groups = {"vip"} if n % 2 == 0 else set()
            person.deleted_at = START if n == 7 else None
            person.suppressed = "unsubscribed" if n == 8 else None
            tx.save_subscriber(person)

    await store.write(shape)
    return ids


async def _emails(store: Store, after: int, until: int, limit: int, *tests: Prefilter) -> str:
    page = await store.read(lambda tx: tx.sweep_page(after, until, limit, tests))
    return "".join(person.email[0] for person in page)


async def check_sweep_pages_test_fields_and_groups_in_sql(store: Store, clock: FakeClock) -> None:
    ids = await _people(store)
    low, high = ids[0] - 1, ids[-1]
    assert await _emails(store, low, high, 100) == "abcdefgj"  # live and unsuppressed
    assert await _emails(store, low, high, 100, FieldIn(("plan",), ("pro",))) == "a"
    assert await _emails(store, low, high, 100, FieldIn(("deep", "plan"), ("pro",))) == "a"
    both = FieldIn(("plan",), ("free", "pr\u00f6"))
    assert await _emails(store, low, high, 100, both) == "bg"
    five = await _emails(store, low, high, 100, FieldIn(("plan",), ("5",)))
    assert five in ("", "c")  # may pass extra rows (the audience is evaluated after)
    assert await _emails(store, low, high, 100, FieldIn(("nope",), ("pro",))) == ""
    assert await _emails(store, low, high, 100, InGroup("vip")) == "aceg"
    vip_pro = (InGroup("vip"), FieldIn(("plan",), ("pro", "free")))
    assert await _emails(store, low, high, 100, *vip_pro) == "a"
    # the id range and the limit page it
    assert await _emails(store, low, high, 3) == "abc"
    assert await _emails(store, ids[2], ids[5], 100) == "def"
    assert await store.read(lambda tx: tx.last_subscriber_id()) == high


async def check_sweep_pages_pass_rows_sql_cannot_read(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    found = await store.read(lambda tx: tx.subscriber_by_id(ann))
    assert found is not None
    odd = dataclasses.replace(found, fields={"plan": "pro", "note": "nul \x00 inside"})
    await store.write(lambda tx: tx.save_subscriber(odd))
    page = await store.read(lambda tx: tx.sweep_page(0, ann, 10, [FieldIn(("plan",), ("pro",))]))
    assert [person.id for person in page] == [ann]


async def check_entries_and_sends_are_written_in_batches(store: Store, clock: FakeClock) -> None:
    ann, bob = await seed(store, "ann@example.com", "bob@example.com")
    later = START.replace(hour=START.hour + 1)
    await store.write(lambda tx: tx.record_entry("welcome", ann, START))
    await store.write(lambda tx: tx.record_entries("welcome", [ann, bob], later))
    ann_entry = await store.read(lambda tx: tx.entry("welcome", ann))
    bob_entry = await store.read(lambda tx: tx.entry("welcome", bob))
    assert ann_entry is not None and (ann_entry.count, ann_entry.first_at) == (2, START)
    assert ann_entry.last_at == later
    assert bob_entry is not None and (bob_entry.count, bob_entry.first_at) == (1, later)
    shared = {"name": "schedule", "data": {"tick": START.isoformat()}}
    first = dataclasses.replace(send("s1", ann), trigger_event=shared, overrides={})
    second = dataclasses.replace(send("s2", bob), trigger_event=shared)
    cancelled = dataclasses.replace(
        send("s3", bob), status=SendStatus.CANCELLED, reason="suppressed", updated_at=START
    )
    await store.write(lambda tx: tx.insert_pendings([first, second, cancelled]))
    await store.write(lambda tx: tx.insert_pendings([first]))  # again: nothing changes
    await store.write(lambda tx: tx.insert_pendings([]))
    assert await read_send(store, "s1") == first
    assert await read_send(store, "s2") == second
    assert await read_send(store, "s3") == cancelled


async def check_a_page_is_entered_by_the_store(store: Store, clock: FakeClock) -> None:
    """`fan_out_page` writes what `sweep_rows` + `record_entries` + `insert_pendings_like`
    would: the same page, entries, and sends equal to the template but for id, subscriber
    and email; rows holding an escaped NUL are handed back untouched."""
    ids = await _people(store)
    (odd,) = await seed(store, "k@x.io")
    found = await store.read(lambda tx: tx.subscriber_by_id(odd))
    assert found is not None
    nul = dataclasses.replace(found, fields={"plan": "pro", "note": "nul \x00 inside"})
    await store.write(lambda tx: tx.save_subscriber(nul))
    low, high = ids[0] - 1, odd
    later = START.replace(hour=START.hour + 1)
    shared = {"name": "schedule", "data": {"tick": START.isoformat()}}
    template = dataclasses.replace(
        send("t1", 0, later), email="", trigger_event=shared, overrides={}
    )
    await store.write(lambda tx: tx.record_entry("welcome", ids[0], START - timedelta(days=1)))
    pro = [FieldIn(("plan",), ("pro",))]
    page = await store.write(lambda tx: tx.fan_out_page(template, low, high, 100, pro))
    assert (page.count, page.last_id) == (2, odd)  # a, and k held back
    assert [row[:2] for row in page.held] == [(odd, "k@x.io")]
    sends = await store.read(lambda tx: tx.pending_sends("welcome", set(SendStatus)))
    assert [(s.subscriber_id, s.email) for s in sends] == [(ids[0], "a@x.io")]
    (made,) = sends
    assert made.id == made.series_id and len(made.id) == 28 and made.id != "t1"
    assert int(made.id[:12], 16) == int(START.timestamp() * 1000)
    expected = dataclasses.replace(
        template, id=made.id, series_id=made.id, subscriber_id=ids[0], email="a@x.io"
    )
    assert made == expected
    entry = await store.read(lambda tx: tx.entry("welcome", ids[0]))
    assert entry is not None and (entry.count, entry.last_at) == (2, START)
    assert await store.read(lambda tx: tx.entry("welcome", odd)) is None
    # a full page ends at its last subscriber; ids of one page sort by subscriber
    page = await store.write(lambda tx: tx.fan_out_page(template, low, high, 3, ()))
    assert (page.count, page.last_id, page.held) == (3, ids[2], [])
    sends = await store.read(lambda tx: tx.pending_sends("welcome", set(SendStatus), 10))
    fresh = sorted((s for s in sends if s.id != made.id), key=lambda s: s.id)
    assert [s.subscriber_id for s in fresh] == ids[:3]
    # nothing in the range: an empty page
    empty = await store.write(lambda tx: tx.fan_out_page(template, high, high + 5, 10, pro))
    assert (empty.count, empty.last_id, empty.held) == (0, None, [])
    with pytest.raises(ValueError, match="first send of a new series"):
        other = dataclasses.replace(template, series_id="x")
        await store.write(lambda tx: tx.fan_out_page(other, low, high, 3, ()))


SWEEP_CONTRACT: list[Check] = [
    check_sweep_pages_test_fields_and_groups_in_sql,
    check_sweep_pages_pass_rows_sql_cannot_read,
    check_entries_and_sends_are_written_in_batches,
    check_a_page_is_entered_by_the_store,
]

__all__ = ["SWEEP_CONTRACT"]
