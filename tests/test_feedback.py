"""Provider feedback against a real SQLite store: dedupe, suppression, statuses, internal events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.core.clock import FakeClock
from runner.core.records import (
    AppliedAutomation,
    Message,
    MessageEvent,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
)
from runner.engine.catalog import Catalog
from runner.engine.feedback import record_provider_event
from runner.store import open_store
from runner.store.base import Store, WriteTx

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=3)
SOURCE = """\
id: intro
status: running
trigger: {type: api}
email: {from: "Shop <s@shop.test>", subject: Hi, text: hello}
"""


def seed(tx: WriteTx, provider_type: str) -> None:
    """One automation, one subscriber, one sent message `m1` (provider id `p1`)."""
    tx.save_automation(
        AppliedAutomation(
            "intro", 1, "running", SOURCE, {}, "automations/intro.yaml", None, T0, T0, None
        )
    )
    ann = tx.save_subscriber(Subscriber(None, "ann@shop.test", {"name": "Ann"}))
    assert ann.id is not None
    tx.insert_pending(
        PendingSend(
            "s1", "intro", ann.id, ann.email, T0, SendStatus.SENT, T0, {}, T0, "s1", attempts=1
        )
    )
    tx.insert_message(
        Message(
            "m1", "s1", "intro", ann.id, ann.email, "Shop <s@shop.test>", "Hi", None, "hello",
            {}, "default", provider_type, "p1", T0, 1,
        )
    )  # fmt: skip


def event(event_id: str, kind: str, message_id: str = "p1", **values: Any) -> MessageEvent:
    return MessageEvent("default", event_id, message_id, kind, T0, LATER, **values)


class Feedback:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def post(self, *events: MessageEvent, provider: str = "default") -> list[str]:
        catalog = Catalog()
        answers = []
        for one in events:

            def work(tx: WriteTx, one: MessageEvent = one) -> str:
                return record_provider_event(tx, catalog, provider, one)

            answers.append(await self.store.write(work))
        return answers

    async def subscriber(self) -> Subscriber:
        found = await self.store.read(lambda tx: tx.subscriber("ann@shop.test"))
        assert found is not None
        return found

    async def message(self) -> Message:
        found = await self.store.read(lambda tx: tx.message("m1"))
        assert found is not None
        return found

    async def internal(self) -> list[StoredEvent]:
        """The internal events raised (stored processed, as no automation listens here)."""
        found = await self.store.read(lambda tx: tx.events_of("ann@shop.test"))
        return [e for e in found if e.type.startswith("email.")]

    async def stored(self) -> list[MessageEvent]:
        return await self.store.read(lambda tx: tx.message_events("m1"))


def scenario(
    tmp_path: Path, body: Callable[[Feedback], Awaitable[None]], provider_type: str = "postmark"
) -> None:
    async def main() -> None:
        store = open_store("sqlite:///" + str(tmp_path / "runner.db"), FakeClock(T0))
        try:
            await store.write(lambda tx: seed(tx, provider_type))
            await body(Feedback(store))
        finally:
            await store.close()

    asyncio.run(main())


def test_duplicate_provider_event_has_no_second_effect(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        assert await f.post(event("e1", "opened"), event("e1", "opened")) == ["stored", "duplicate"]
        assert [e.type for e in await f.internal()] == ["email.opened"]
        [stored] = await f.stored()
        assert (stored.message_id, stored.provider_event_id) == ("m1", "e1")

    scenario(tmp_path, body)


def test_event_names_message_by_our_id_or_the_providers(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        assert await f.post(event("e1", "delivered", "m1"), event("e2", "opened", "p1")) == [
            "stored",
            "stored",
        ]
        assert [e.message_id for e in await f.stored()] == ["m1", "m1"]
        assert await f.post(event("e3", "opened", "nope")) == ["unknown_message"]
        assert await f.post(event("e4", "opened", "p1"), provider="other") == ["unknown_message"]
        assert len(await f.stored()) == 2

    scenario(tmp_path, body)


def test_every_engagement_event_becomes_an_internal_event(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        await f.post(
            event("e1", "delivered"),
            event("e2", "delivered"),  # a second report of the delivery: its own event id
            event("e3", "opened"),
            event("e4", "opened"),  # a re-open is a new trigger
            event("e5", "clicked", url="https://shop.test/sale"),
            event("e6", "clicked", url="https://shop.test/sale"),  # so is a second click
            event("e7", "clicked", url="https://shop.test/other"),
            event("e6", "clicked", url="https://shop.test/sale"),  # a provider retry: dropped
        )
        internal = await f.internal()
        assert [(e.type, e.data.get("link")) for e in internal] == [
            ("email.delivered", None),
            ("email.delivered", None),
            ("email.opened", None),
            ("email.opened", None),
            ("email.clicked", "https://shop.test/sale"),
            ("email.clicked", "https://shop.test/sale"),
            ("email.clicked", "https://shop.test/other"),
        ]
        first = internal[0]
        assert (first.email, first.received_at) == ("ann@shop.test", LATER)
        assert first.data == {"automation": "intro", "message_id": "m1", "sent_at": T0.isoformat()}
        assert await f.subscriber() == await f.subscriber()  # untouched
        assert (await f.subscriber()).suppressed is None

    scenario(tmp_path, body)


def test_a_click_is_one_internal_click_event(tmp_path: Path) -> None:
    # The event processor lets every click fire `opened` listeners too (a click counts as an
    # open); feedback records one internal event per provider event.
    async def body(f: Feedback) -> None:
        await f.post(event("e1", "clicked", url="https://shop.test/a"), event("e2", "opened"))
        assert [e.type for e in await f.internal()] == ["email.clicked", "email.opened"]

    scenario(tmp_path, body)


def test_outbox_delivery_was_already_counted_at_send_time(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        await f.post(event("e1", "delivered"), event("e2", "opened"))
        assert [e.type for e in await f.internal()] == ["email.opened"]

    scenario(tmp_path, body, provider_type="outbox")


def test_hard_bounce_suppresses_and_fails_the_message(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        await f.post(event("e1", "bounced", bounce="hard"), event("e2", "bounced", bounce="hard"))
        ann = await f.subscriber()
        assert (ann.suppressed, ann.suppressed_at) == ("bounced", LATER)
        assert (await f.message()).status == "bounced"
        assert [e.type for e in await f.internal()] == ["email.failed", "email.failed"]

    scenario(tmp_path, body)


def test_bounce_without_kind_is_hard(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        await f.post(event("e1", "bounced"))
        assert (await f.subscriber()).suppressed == "bounced"

    scenario(tmp_path, body)


def test_soft_bounce_fails_without_suppressing(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        assert await f.post(event("e1", "bounced", bounce="soft")) == ["stored"]
        assert (await f.subscriber()).suppressed is None
        assert (await f.message()).status == "sent"
        [failed] = await f.internal()
        assert (failed.type, failed.data["message_id"]) == ("email.failed", "m1")
        assert len(await f.stored()) == 1

    scenario(tmp_path, body)


@pytest.mark.parametrize("kind", ["complained", "unsubscribed"])
def test_complaints_and_unsubscribes_suppress(tmp_path: Path, kind: str) -> None:
    async def body(f: Feedback) -> None:
        await f.post(event("e1", kind))
        ann = await f.subscriber()
        assert (ann.suppressed, ann.suppressed_at) == (kind, LATER)
        assert (await f.message()).status == "sent"
        assert await f.internal() == []

    scenario(tmp_path, body)


def test_first_suppression_reason_stays(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        await f.post(event("e1", "unsubscribed"), event("e2", "complained"))
        assert (await f.subscriber()).suppressed == "unsubscribed"

    scenario(tmp_path, body)


def test_an_event_reconciles_a_send_whose_outcome_was_unknown(tmp_path: Path) -> None:
    async def body(f: Feedback) -> None:
        def unknown(tx: WriteTx) -> None:
            tx.set_status(["s1"], SendStatus.OUTCOME_UNKNOWN, T0, from_statuses={SendStatus.SENT})
            tx.set_message_status("m1", "outcome_unknown")

        await f.store.write(unknown)
        assert await f.post(event("e1", "delivered", "m1")) == ["stored"]
        send = await f.store.read(lambda tx: tx.pending_send("s1"))
        assert send is not None and send.status == SendStatus.SENT
        assert (await f.message()).status == "sent"
        assert [e.type for e in await f.internal()] == ["email.sent", "email.delivered"]

    scenario(tmp_path, body)


LISTENER = """\
id: follow
status: running
trigger: {type: email, action: opened, automation: intro}
email: {from: "Shop <s@shop.test>", subject: Thanks, text: thanks}
"""


def test_internal_event_waits_for_processing_only_when_an_automation_may_listen(
    tmp_path: Path,
) -> None:
    async def body(f: Feedback) -> None:
        unheard = await f.post(event("e1", "opened"))
        assert unheard == ["stored"] and len(await f.internal()) == 1
        assert await f.store.write(lambda tx: tx.unprocessed_events(10)) == []

        def listen(tx: WriteTx) -> Catalog:
            tx.save_automation(
                AppliedAutomation(
                    "follow", 1, "running", LISTENER, {}, "automations/follow.yaml",
                    None, T0, T0, None,
                )
            )  # fmt: skip
            return Catalog.build(tx.automations(), tx.status_changes(), revision="r1")

        listening = await f.store.write(listen)
        heard = await f.store.write(
            lambda tx: record_provider_event(tx, listening, "default", event("e2", "opened"))
        )
        assert heard == "stored"
        waiting = await f.store.write(lambda tx: tx.unprocessed_events(10))
        assert [e.type for e in waiting] == ["email.opened"]
        # A reload committed since the catalog was built: it may listen now, so it waits.
        stale = Catalog.build([], [], revision="r0")
        await f.store.write(
            lambda tx: record_provider_event(tx, stale, "default", event("e3", "delivered"))
        )
        waiting = await f.store.write(lambda tx: tx.unprocessed_events(10))
        assert [e.type for e in waiting] == ["email.opened", "email.delivered"]

    scenario(tmp_path, body)
