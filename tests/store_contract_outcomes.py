"""Store contract: a sender round's outcomes written many at once (the claims ended, the
messages and the internal events of the sends the provider accepted); shared by both stores."""

from __future__ import annotations

import functools
from datetime import timedelta

from runner.core.clock import FakeClock
from runner.core.records import PendingSend, SendStatus
from runner.store.base import ReadTx, Store
from runner.store.claims import EmailEvent
from tests.store_contract import START, Check, insert, message, seed, send


async def check_finish_claims_ends_only_the_claims_of_its_token(
    store: Store, clock: FakeClock
) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await insert(store, *(send(i, ann) for i in ("s1", "s2", "s3", "s4")))
    lease = START + timedelta(minutes=1)
    await store.write(lambda tx: tx.claim_due(START, 3, lease, "t"))  # s1..s3
    await store.write(lambda tx: tx.mark_in_flight("t", {"s1": {"m": 1}, "s2": {"m": 2}}))
    later = START + timedelta(seconds=5)
    ended = await store.write(
        lambda tx: tx.finish_claims(["s1", "s2", "s4"], "t", SendStatus.SENT, later)
    )
    assert ended == {"s1", "s2"}  # s4 is not claimed; s3 is not named
    fenced = await store.write(lambda tx: tx.finish_claims(["s3"], "old", SendStatus.SENT, later))
    assert fenced == set()
    assert await store.write(lambda tx: tx.finish_claims([], "t", SendStatus.SENT, later)) == set()
    for send_id in ("s1", "s2"):
        found = await store.read(functools.partial(_send, send_id=send_id))
        assert found is not None
        assert (found.status, found.attempts, found.updated_at) == (SendStatus.SENT, 1, later)
        assert (found.lease_token, found.lease_until, found.in_flight) == (None, None, None)
    s3 = await store.read(lambda tx: tx.pending_send("s3"))
    assert s3 is not None and (s3.status, s3.lease_token) == (SendStatus.CLAIMED, "t")


async def check_insert_messages_and_email_events(store: Store, clock: FakeClock) -> None:
    (ann,) = await seed(store, "ann@example.com")
    await insert(store, send("s1", ann), send("s2", ann))
    first, second = message("m1", "s1", ann), message("m2", "s2", ann)
    await store.write(lambda tx: tx.insert_messages([first, second]))
    await store.write(lambda tx: tx.insert_messages([first]))  # again: changes nothing
    assert await store.read(lambda tx: tx.message("m1")) == first
    assert await store.read(lambda tx: tx.message("m2")) == second
    events = [
        EmailEvent("email.sent", "Ann@Example.com", {"message_id": "m1"}, START, True),
        EmailEvent("email.delivered", "ann@example.com", {"message_id": "m1"}, START, False),
        EmailEvent("email.sent", "ann@example.com", {"message_id": "m2"}, START, True),
    ]
    await store.write(lambda tx: tx.add_email_events(events))
    stored = await store.read(lambda tx: tx.events_of("ann@example.com"))
    assert [(e.type, e.data) for e in stored] == [(e.type, e.data) for e in events]
    assert all(e.id is None and e.received_at == START for e in stored)
    waiting = await store.write(lambda tx: tx.unprocessed_events(10))
    assert [e.type for e in waiting] == ["email.delivered"]


def _send(tx: ReadTx, send_id: str) -> PendingSend | None:
    return tx.pending_send(send_id)


OUTCOMES_CONTRACT: list[Check] = [
    check_finish_claims_ends_only_the_claims_of_its_token,
    check_insert_messages_and_email_events,
]
