"""Event processing against a real SQLite store (docs/events.md): derived events, gating,
conditions, group and email triggers, exit_on, deletion and suppression."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from runner.core.clock import FakeClock
from runner.core.records import (
    AppliedAutomation,
    HistoryEntry,
    IncomingEvent,
    Message,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
)
from runner.engine import events as events_module
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from runner.engine.events import process_pending
from runner.store import open_store
from runner.store.base import ReadTx, WriteTx
from runner.store.errors import TransactionAborted

T = TypeVar("T")
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 10:00 in Seoul
HOUR = timedelta(hours=1)
ALL_STATUSES = list(SendStatus)


def automation_yaml(automation_id: str, trigger: dict[str, Any], **extra: Any) -> str:
    """A valid automation file with a text body."""
    document: dict[str, Any] = {
        "id": automation_id,
        "status": "running",
        "trigger": trigger,
        "email": {"from": "Shop <news@shop.example>", "subject": "Hi", "text": "Hello"},
    }
    document.update(extra)
    return yaml.safe_dump(document, sort_keys=False)


class Harness:
    """A SQLite store on a fake clock, with helpers to apply automations and post events."""

    def __init__(self, path: Path, start: datetime = T0) -> None:
        self.clock = FakeClock(start)
        self.loop = asyncio.new_event_loop()
        self.store = open_store("sqlite:///" + str(path / "pw.sqlite3"), self.clock)
        self.ctx = EngineContext("UTC", "https://pw.example", b"k" * 32)
        self._counter = 0

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()

    def write(self, work: Callable[[WriteTx], T]) -> T:
        return self.loop.run_until_complete(self.store.write(work))

    def read(self, work: Callable[[ReadTx], T]) -> T:
        return self.loop.run_until_complete(self.store.read(work))

    def at(self, instant: datetime) -> None:
        self.clock.set(instant)

    def apply(
        self,
        automation_id: str,
        trigger: dict[str, Any],
        statuses: list[tuple[datetime, str]] | None = None,
        **extra: Any,
    ) -> None:
        """Store an applied automation and its effective status moments (default: running
        from a day before T0)."""
        moments = statuses or [(T0 - 24 * HOUR, "running")]
        row = AppliedAutomation(
            id=automation_id,
            revision=1,
            status=moments[-1][1],
            source=automation_yaml(automation_id, trigger, **extra),
            templates={},
            path=f"automations/{automation_id}.yaml",
            commit=None,
            applied_at=moments[0][0],
            started_at=None,
            stopped_at=None,
        )

        def work(tx: WriteTx) -> None:
            tx.save_automation(row)
            previous: str | None = None
            for at, value in moments:
                tx.add_history(HistoryEntry(automation_id, at, "status", previous, value))
                previous = value

        self.write(work)

    def set_status(self, automation_id: str, at: datetime, value: str) -> None:
        """Record one more effective status moment."""
        entry = HistoryEntry(automation_id, at, "status", None, value)
        self.write(lambda tx: tx.add_history(entry))

    def catalog(self) -> Catalog:
        return self.read(lambda tx: Catalog.build(tx.automations(), tx.status_changes()))

    def post(
        self,
        type: str,
        email: str = "ann@example.com",
        *,
        fields: dict[str, Any] | None = None,
        groups: list[str] | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Ingest one client event, received at the clock's time."""
        self._counter += 1
        event = IncomingEvent(
            id=f"ev-{self._counter}",
            type=type,
            email=email,
            fields=fields,
            groups=groups,
            data=data or {},
            occurred_at=None,
            body_hash=f"h{self._counter}",
        )
        self.loop.run_until_complete(self.store.ingest([event]))

    def internal(self, type: str, email: str, data: dict[str, Any]) -> None:
        """Record an internal email.* event at the clock's time (as feedback/sender do)."""
        now = self.clock.now()
        self.write(lambda tx: tx.add_event(type, email, data, now, processed=False))

    def process(self) -> int:
        catalog = self.catalog()
        return self.write(lambda tx: process_pending(tx, catalog, self.ctx))

    def sends(self, automation_id: str) -> list[PendingSend]:
        found = self.read(lambda tx: tx.pending_sends(automation_id, ALL_STATUSES, 1000))
        return sorted(found, key=lambda send: (send.created_at, send.id))

    def pending(self, automation_id: str) -> list[PendingSend]:
        return [s for s in self.sends(automation_id) if s.status is SendStatus.PENDING]

    def subscriber(self, email: str = "ann@example.com") -> Subscriber | None:
        return self.read(lambda tx: tx.subscriber(email))

    def events(self, email: str, types: list[str]) -> list[StoredEvent]:
        return self.read(lambda tx: tx.events_after(email, types, T0 - 1000 * HOUR))

    def finish(self, send: PendingSend, to: SendStatus = SendStatus.SENT) -> None:
        now = self.clock.now()
        self.write(lambda tx: tx.set_status([send.id], to, now, from_statuses={SendStatus.PENDING}))


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


# --- subscribers and derived events ----------------------------------------------------


def test_first_event_creates_subscriber_and_derived_events_are_stored_in_order(
    h: Harness,
) -> None:
    h.post("purchase", " Ann@Example.com ", fields={"name": "Ann"}, groups=["vip"])
    assert h.process() == 1
    ann = h.subscriber()
    assert ann is not None and ann.id is not None
    assert ann.fields == {"name": "Ann"}
    assert ann.groups == {"vip"}
    assert ann.created_at == T0
    h.at(T0 + HOUR)
    h.post("profile", fields={"name": "Anna", "plan": "pro"}, groups=["news"])
    assert h.process() == 1
    names = ["subscriber.added", "subscriber.updated", "group.joined", "group.left", "purchase"]
    stored = h.events("ann@example.com", [*names, "profile"])
    assert [(e.type, e.data) for e in stored] == [
        ("purchase", {}),
        ("subscriber.added", {}),
        ("profile", {}),
        ("group.joined", {"group": "news"}),
        ("group.left", {"group": "vip"}),
        (
            "subscriber.updated",
            {"changed": ["name", "plan"], "previous": {"name": "Ann", "plan": None}},
        ),
    ]
    assert stored[1].derived_from == stored[0].seq
    assert stored[1].received_at == T0
    assert all(e.derived_from == stored[2].seq for e in stored[3:])
    assert h.process() == 0, "everything was marked processed"


def test_a_batch_reads_its_subscribers_at_once_and_later_events_see_earlier_ones(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.store.sqlite_write import SqliteWriteTx

    h.post("signup", "carl@example.com", fields={"plan": "free"})
    assert h.process() == 1
    h.post("signup", "ann@example.com", fields={"name": "Ann"})
    h.post("profile", "ANN@example.com", fields={"plan": "pro"})
    h.post("signup", "bob@example.com")
    h.post("profile", "carl@example.com", fields={"plan": "pro"})
    reads: list[str] = []
    single = SqliteWriteTx.subscriber
    batch = SqliteWriteTx.subscribers_by_emails

    def subscriber(tx: SqliteWriteTx, email: str) -> Subscriber | None:
        reads.append(email)
        return single(tx, email)

    def subscribers_by_emails(tx: SqliteWriteTx, emails: Any) -> dict[str, Subscriber]:
        reads.append("batch:" + ",".join(sorted(emails)))
        return batch(tx, emails)

    monkeypatch.setattr(SqliteWriteTx, "subscriber", subscriber)
    monkeypatch.setattr(SqliteWriteTx, "subscribers_by_emails", subscribers_by_emails)
    assert h.process() == 4
    assert reads == ["batch:ann@example.com,bob@example.com,carl@example.com", "ann@example.com"]
    ann, carl = h.subscriber(), h.subscriber("carl@example.com")
    assert ann is not None and ann.fields == {"name": "Ann", "plan": "pro"}
    assert carl is not None and carl.fields == {"plan": "pro"}
    assert [e.type for e in h.events("ann@example.com", ["subscriber.added"])] == [
        "subscriber.added"
    ]
    assert [e.data["changed"] for e in h.events("carl@example.com", ["subscriber.updated"])] == [
        ["plan"]
    ]
    assert h.read(lambda tx: tx.failed_events(10)) == []


def test_a_batch_applied_again_after_a_failure_starts_from_the_subscribers_before_it(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from runner.engine.entering import enter as real_enter

    def enter(tx: WriteTx, *args: Any, **kwargs: Any) -> Any:
        if args[2].email == "bad@example.com":
            raise RuntimeError("boom")
        return real_enter(tx, *args, **kwargs)

    monkeypatch.setattr(events_module, "enter", enter)
    h.apply("welcome", {"type": "event", "event": "signup"})
    h.post("signup", "ann@example.com", fields={"name": "Ann"})
    h.post("signup", "bad@example.com")
    h.post("profile", "ann@example.com", fields={"plan": "pro"})
    with caplog.at_level(logging.CRITICAL, logger="runner.engine.events"):
        assert h.process() == 3
    ann = h.subscriber()
    assert ann is not None and ann.fields == {"name": "Ann", "plan": "pro"}
    assert len(h.events("ann@example.com", ["subscriber.added"])) == 1
    assert len(h.events("ann@example.com", ["subscriber.updated"])) == 1
    assert [s.email for s in h.sends("welcome")] == ["ann@example.com"]
    assert h.subscriber("bad@example.com") is None


def test_derived_events_trigger_before_the_event_and_see_the_updated_subscriber(
    h: Harness,
) -> None:
    vip_now = {
        "all": [
            {"field": "event.data.changed", "op": "contains", "value": "grade"},
            {"field": "subscriber.fields.grade", "op": "eq", "value": "VIP"},
        ]
    }
    h.apply("vip", {"type": "event", "event": "subscriber.updated", "where": vip_now})
    h.apply("welcome", {"type": "event", "event": "subscriber.added"})
    h.post("signup", fields={"grade": "basic"})
    h.process()
    assert len(h.sends("welcome")) == 1
    assert h.sends("vip") == []
    h.post("profile", fields={"grade": "VIP"})
    h.process()
    [send] = h.sends("vip")
    assert send.trigger_event["name"] == "subscriber.updated"
    assert send.trigger_event["data"] == {"changed": ["grade"], "previous": {"grade": "basic"}}
    assert len(h.sends("welcome")) == 1, "subscriber.added fires once"


def test_client_sent_subscriber_updated_does_not_fire_twice(h: Harness) -> None:
    h.apply("changed", {"type": "event", "event": "subscriber.updated"}, retrigger=True)
    h.post("signup", fields={"a": 1})
    h.post("subscriber.updated", fields={"a": 2})
    h.process()
    assert len(h.sends("changed")) == 1
    h.post("subscriber.updated", fields={"a": 2})
    h.process()
    assert len(h.sends("changed")) == 1, "nothing changed: no subscriber.updated"


def test_explicit_subscriber_added_carries_source_for_where(h: Harness) -> None:
    not_admin = {"field": "event.data.source", "op": "ne", "value": "admin"}
    h.apply("welcome", {"type": "event", "event": "subscriber.added", "where": not_admin})
    h.post("subscriber.added", "a@example.com", data={"source": "admin"})
    h.post("subscriber.added", "b@example.com", data={"source": "form"})
    h.process()
    assert [s.email for s in h.sends("welcome")] == ["b@example.com"]


# --- gating (only running automations) -----------------------------------------------


def test_only_events_received_while_running_trigger(h: Harness) -> None:
    timeline = [
        (T0, "draft"),
        (T0 + 1 * HOUR, "scheduled"),
        (T0 + 2 * HOUR, "running"),
        (T0 + 3 * HOUR, "paused"),
        (T0 + 4 * HOUR, "running"),
        (T0 + 5 * HOUR, "stopped"),
    ]
    h.apply("a", {"type": "event", "event": "ping"}, timeline, retrigger=True)
    for hours in (0.5, 1.5, 2.5, 3.5, 4.5, 5.5):
        h.at(T0 + hours * HOUR)
        h.post("ping", f"u{int(hours * 10)}@example.com")
    h.process()
    assert sorted(s.email for s in h.sends("a")) == ["u25@example.com", "u45@example.com"]


def test_event_received_while_paused_is_not_considered_after_resume(h: Harness) -> None:
    h.apply("a", {"type": "event", "event": "ping"}, [(T0 - HOUR, "paused")])
    h.post("ping")
    h.set_status("a", T0 + HOUR, "running")  # resumed before the worker got to the event
    h.at(T0 + 2 * HOUR)
    h.process()
    assert h.sends("a") == []
    h.post("ping")
    h.process()
    assert len(h.sends("a")) == 1


# --- conditions and group triggers ---------------------------------------------------


def test_where_sees_event_data_and_subscriber(h: Harness) -> None:
    where = {
        "all": [
            {"field": "event.data.total", "op": "gt", "value": 100},
            {"not": {"in_group": "staff"}},
        ]
    }
    h.apply("big", {"type": "event", "event": "purchase", "where": where}, retrigger=True)
    h.post("purchase", "small@example.com", data={"total": 50})
    h.post("purchase", "big@example.com", data={"total": 150})
    h.post("purchase", "staff@example.com", groups=["staff"], data={"total": 150})
    h.process()
    assert [s.email for s in h.sends("big")] == ["big@example.com"]
    [send] = h.sends("big")
    assert send.trigger_event == {
        "name": "purchase",
        "data": {"total": 150},
        "occurred_at": T0.isoformat(),
    }
    assert send.due_at == T0
    assert send.trigger_at == T0


def test_group_trigger_fires_for_its_group_only_and_not_at_creation(h: Harness) -> None:
    h.apply("joined", {"type": "event", "event": "group.joined", "group": "vip"}, retrigger=True)
    h.apply("left", {"type": "event", "event": "group.left", "group": "vip"})
    h.post("signup", "new@example.com", groups=["vip"])
    h.post("signup", "old@example.com", groups=["news"])
    h.process()
    assert h.sends("joined") == []
    h.post("profile", "old@example.com", groups=["news", "other"])
    h.process()
    assert h.sends("joined") == []
    h.post("profile", "old@example.com", groups=["vip"])
    h.post("group.joined", "new@example.com", data={"group": "beta"})
    h.process()
    assert [s.email for s in h.sends("joined")] == ["old@example.com"]
    h.post("group.left", "old@example.com", data={"group": "vip"})
    h.process()
    assert [s.email for s in h.sends("left")] == ["old@example.com"]
    old = h.subscriber("old@example.com")
    assert old is not None and old.groups == set()


# --- exit_on ----------------------------------------------------------------


def coupon(h: Harness, statuses: list[tuple[datetime, str]] | None = None) -> None:
    exit_on = [
        {"event": "purchase", "where": {"field": "event.data.total", "op": "gt", "value": 0}}
    ]
    h.apply("coupon", {"type": "event", "event": "viewed"}, statuses, wait="7d", exit_on=exit_on)


def test_exit_on_cancels_pending_send_when_the_event_arrives(h: Harness) -> None:
    coupon(h)
    h.post("viewed", "buyer@example.com")
    h.post("viewed", "free@example.com")
    h.post("viewed", "idle@example.com")
    h.process()
    h.at(T0 + 72 * HOUR)
    h.post("purchase", "buyer@example.com", data={"total": 30})
    h.post("purchase", "free@example.com", data={"total": 0})
    h.process()
    by_email = {s.email: s for s in h.sends("coupon")}
    assert by_email["buyer@example.com"].status is SendStatus.CANCELLED
    assert by_email["buyer@example.com"].reason == "exit_on"
    assert by_email["free@example.com"].status is SendStatus.PENDING
    assert by_email["idle@example.com"].status is SendStatus.PENDING
    assert by_email["idle@example.com"].due_at == T0 + 7 * 24 * HOUR


def test_exit_on_cancels_even_when_the_automation_is_paused(h: Harness) -> None:
    coupon(h)
    h.post("viewed")
    h.process()
    h.set_status("coupon", T0 + HOUR, "paused")
    h.at(T0 + 2 * HOUR)
    h.post("purchase", data={"total": 10})
    h.process()
    [send] = h.sends("coupon")
    assert (send.status, send.reason) == (SendStatus.CANCELLED, "exit_on")


def test_the_triggering_event_does_not_exit_its_own_send(h: Harness) -> None:
    h.apply(
        "again",
        {"type": "event", "event": "purchase"},
        wait="1d",
        exit_on=[{"event": "purchase"}],
    )
    h.post("purchase")
    h.process()
    [send] = h.sends("again")
    assert send.status is SendStatus.PENDING
    h.at(T0 + HOUR)
    h.post("purchase")
    h.process()
    assert [(s.status, s.reason) for s in h.sends("again")] == [(SendStatus.CANCELLED, "exit_on")]


# --- retrigger, repeat, windows --------------------------------------------------------


def test_retrigger_false_enters_once(h: Harness) -> None:
    h.apply("once", {"type": "event", "event": "ping"})
    h.post("ping")
    h.process()
    h.finish(h.sends("once")[0])
    h.at(T0 + 48 * HOUR)
    h.post("ping")
    h.process()
    assert len(h.sends("once")) == 1


def test_retrigger_true_enters_every_time(h: Harness) -> None:
    h.apply("always", {"type": "event", "event": "ping"}, retrigger=True)
    for hours in (0, 1, 2):
        h.at(T0 + hours * HOUR)
        h.post("ping")
        h.process()
        h.finish(h.pending("always")[0])
    assert [s.status for s in h.sends("always")] == [SendStatus.SENT] * 3


def test_retrigger_cooldown_ignores_triggers_within_it(h: Harness) -> None:
    h.apply("cool", {"type": "event", "event": "opened"}, retrigger={"cooldown": "1h"})
    for minutes in (0, 30, 70):  # 10:00 sends, 10:30 does not, 11:10 sends again
        h.at(T0 + timedelta(minutes=minutes))
        h.post("opened")
        h.process()
        for send in h.pending("cool"):
            h.finish(send)
    assert [s.trigger_at for s in h.sends("cool")] == [T0, T0 + timedelta(minutes=70)]


def test_retrigger_reanchors_an_active_repeat_series(h: Harness) -> None:
    h.apply(
        "daily",
        {"type": "event", "event": "opened"},
        retrigger=True,
        repeat={"every": "1d", "times": 3},
    )
    h.post("opened")
    h.process()
    [first] = h.sends("daily")
    h.finish(first)
    # What the sender does after the first email: the next repeat, due anchor + 1d.
    repeat = PendingSend(
        id="r1",
        automation_id="daily",
        subscriber_id=first.subscriber_id,
        email=first.email,
        due_at=T0 + 24 * HOUR,
        status=SendStatus.PENDING,
        trigger_at=T0,
        trigger_event=first.trigger_event,
        created_at=T0,
        series_id=first.series_id,
        repeat_index=1,
    )
    h.write(lambda tx: tx.insert_pending(repeat))
    h.at(T0 + HOUR)
    h.post("opened")
    h.process()
    sends = {s.id: s for s in h.sends("daily")}
    assert (sends["r1"].status, sends["r1"].reason) == (SendStatus.CANCELLED, "reanchored")
    [moved] = [s for s in sends.values() if s.status is SendStatus.PENDING]
    assert moved.repeat_index == 1
    assert moved.series_id == first.series_id
    assert moved.due_at == T0 + 25 * HOUR
    assert moved.trigger_at == T0 + HOUR
    assert len(sends) == 3, "no extra first email"


def test_due_time_moves_into_the_window_of_its_zone(h: Harness) -> None:
    window = {"days": ["mon", "tue"], "start": "09:00", "end": "18:00", "timezone": "Asia/Seoul"}
    h.apply("win", {"type": "event", "event": "ping"}, send_window=window, wait="10h")
    h.post("ping")  # 10:00 Seoul on Monday + 10h = 20:00 Seoul: after the window closed
    h.process()
    [send] = h.sends("win")
    assert send.due_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # Tuesday 09:00 Seoul


def test_subscriber_zone_window(h: Harness) -> None:
    window = {"start": "09:00", "end": "17:00", "timezone": "subscriber"}
    h.apply("win", {"type": "event", "event": "ping"}, send_window=window, retrigger=True)
    h.post("ping", "ny@example.com", fields={"timezone": "America/New_York"})
    h.post("ping", "bad@example.com", fields={"timezone": "Mars/Olympus"})
    h.process()
    due = {s.email: s.due_at for s in h.sends("win")}
    # 01:00 UTC is 20:00 in New York (EST): next opening 09:00 EST = 14:00 UTC.
    assert due["ny@example.com"] == datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    # An invalid zone falls back to the runner default (UTC): 09:00 UTC.
    assert due["bad@example.com"] == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# --- suppression and deletion --------------------------------------------------------


def test_unsubscribed_trigger_is_cancelled_and_resubscribe_lifts(h: Harness) -> None:
    h.apply("a", {"type": "event", "event": "ping"}, retrigger=True)
    h.post("signup")
    h.post("subscriber.unsubscribed")
    h.post("ping")
    h.process()
    [send] = h.sends("a")
    assert (send.status, send.reason) == (SendStatus.CANCELLED, "suppressed")
    h.at(T0 + HOUR)
    h.post("subscriber.resubscribed")
    h.post("ping")
    h.process()
    assert [s.status for s in h.sends("a")] == [SendStatus.CANCELLED, SendStatus.PENDING]


def test_delete_cancels_sends_and_a_later_event_creates_a_new_subscriber(h: Harness) -> None:
    h.apply("a", {"type": "event", "event": "ping"}, wait="1d")
    h.post("ping", fields={"name": "Ann"}, groups=["vip"])
    h.process()
    before = h.subscriber()
    assert before is not None
    h.at(T0 + HOUR)
    h.post("subscriber.deleted")
    h.process()
    [send] = h.sends("a")
    assert (send.status, send.reason) == (SendStatus.CANCELLED, "deleted_subscriber")
    assert h.subscriber() is None
    gone = h.read(lambda tx: tx.subscriber_by_id(before.id or 0))
    assert gone is not None and gone.deleted_at == T0 + HOUR
    assert gone.fields == {} and gone.groups == set()
    assert gone.email.startswith("deleted:") and "ann" not in gone.email
    h.at(T0 + 2 * HOUR)
    h.post("ping")
    h.process()
    again = h.subscriber()
    assert again is not None and again.id != before.id
    assert len(h.pending("a")) == 1, "a new subscriber enters afresh"
    h.post("subscriber.deleted")
    h.process()
    assert h.subscriber() is None, "the same address can be deleted twice"


def test_deleting_an_unknown_email_creates_nobody(h: Harness) -> None:
    h.post("subscriber.deleted", "ghost@example.com")
    assert h.process() == 1
    assert h.read(lambda tx: tx.subscribers(0, 10)) == []


# --- email triggers ---------------------------------------------------------


def message(send: PendingSend, msg_id: str, listeners: list[str]) -> Message:
    return Message(
        id=msg_id,
        pending_send_id=send.id,
        automation_id="intro",
        subscriber_id=send.subscriber_id,
        to=send.email,
        from_="news@shop.example",
        subject="Intro",
        html=None,
        text="Hi",
        headers={},
        provider="default",
        provider_type="outbox",
        provider_message_id=msg_id,
        sent_at=T0,
        revision=1,
        listeners=listeners,
    )


def email_data(msg_id: str, **extra: Any) -> dict[str, Any]:
    return {"automation": "intro", "message_id": msg_id, "sent_at": T0.isoformat(), **extra}


@pytest.fixture
def mail(h: Harness) -> Harness:
    h.apply("intro", {"type": "event", "event": "signup"})
    h.post("signup")
    h.process()
    [send] = h.sends("intro")
    h.finish(send)
    m1 = message(send, "m1", ["opener", "clicker", "sale", "bounce"])
    h.write(lambda tx: tx.insert_message(m1))
    h.write(lambda tx: tx.insert_message(message(send, "m2", [])))
    h.at(T0 + HOUR)
    return h


def test_open_triggers_only_for_messages_listing_the_automation(mail: Harness) -> None:
    mail.apply(
        "opener", {"type": "email", "action": "opened", "automation": "intro"}, retrigger=True
    )
    mail.internal("email.opened", "ann@example.com", email_data("m2"))
    mail.process()
    assert mail.sends("opener") == [], "m2 was sent before opener listened"
    mail.internal("email.opened", "ann@example.com", email_data("m1"))
    mail.process()
    [send] = mail.sends("opener")
    assert send.trigger_event == {"name": "email.opened", "data": email_data("m1")}
    assert send.trigger_at == T0 + HOUR


def test_every_open_and_every_click_fires_opened_listeners(mail: Harness) -> None:
    mail.apply(
        "opener", {"type": "email", "action": "opened", "automation": "intro"}, retrigger=True
    )
    x = email_data("m1", link="https://a.example/x")
    for minutes, (kind, data) in enumerate(
        [
            ("email.clicked", x),  # a click counts as an open
            ("email.opened", email_data("m1")),
            ("email.opened", email_data("m1")),  # a second open is a new trigger
            ("email.clicked", x),  # and so is a second click on the same link
        ]
    ):
        mail.at(T0 + HOUR + timedelta(minutes=minutes))
        mail.internal(kind, "ann@example.com", data)
    mail.process()
    triggers = [s.trigger_event for s in mail.sends("opener")]
    assert triggers == [
        {"name": "email.opened", "data": x},
        {"name": "email.opened", "data": email_data("m1")},
        {"name": "email.opened", "data": email_data("m1")},
        {"name": "email.opened", "data": x},
    ]


def test_retrigger_decides_about_repeated_opens(mail: Harness) -> None:
    mail.apply("opener", {"type": "email", "action": "opened", "automation": "intro"})
    mail.apply(
        "clicker",
        {"type": "email", "action": "clicked", "automation": "intro"},
        retrigger={"cooldown": "1h"},
    )
    for minutes in (0, 30, 90):
        mail.at(T0 + HOUR + timedelta(minutes=minutes))
        mail.internal("email.opened", "ann@example.com", email_data("m1"))
        mail.internal("email.clicked", "ann@example.com", email_data("m1", link="https://a.b/c"))
    mail.process()
    assert len(mail.sends("opener")) == 1, "retrigger: false enters once"
    clicks = [s.trigger_at - T0 - HOUR for s in mail.sends("clicker")]
    assert clicks == [timedelta(0), timedelta(minutes=90)], "the cooldown refused the second"


def test_click_filters_on_link(mail: Harness) -> None:
    mail.apply(
        "clicker",
        {
            "type": "email",
            "action": "clicked",
            "automation": "intro",
            "link": "https://shop.example/a",
        },
        retrigger=True,
    )
    mail.apply(
        "sale",
        {"type": "email", "action": "clicked", "automation": "intro", "link_contains": "/sale"},
        retrigger=True,
    )
    mail.internal(
        "email.clicked", "ann@example.com", email_data("m1", link="https://shop.example/sale/1")
    )
    mail.process()
    assert (len(mail.sends("clicker")), len(mail.sends("sale"))) == (0, 1)
    mail.internal(
        "email.clicked", "ann@example.com", email_data("m1", link="https://shop.example/a")
    )
    mail.process()
    assert (len(mail.sends("clicker")), len(mail.sends("sale"))) == (1, 1)


def test_failed_trigger_and_gating_at_receipt(mail: Harness) -> None:
    mail.apply(
        "bounce",
        {"type": "email", "action": "failed", "automation": "intro"},
        [(T0 - HOUR, "running"), (T0 + 30 * timedelta(minutes=1), "paused")],
    )
    mail.internal("email.failed", "ann@example.com", email_data("m1"))
    mail.process()
    assert mail.sends("bounce") == [], "paused when the failure was received"
    mail.set_status("bounce", T0 + 2 * HOUR, "running")
    mail.at(T0 + 3 * HOUR)
    mail.internal("email.failed", "ann@example.com", email_data("m1"))
    mail.process()
    assert len(mail.sends("bounce")) == 1


def test_email_events_of_unknown_subscribers_are_skipped(mail: Harness) -> None:
    mail.apply("opener", {"type": "email", "action": "opened", "automation": "intro"})
    mail.internal("email.opened", "nobody@example.com", email_data("m1"))
    assert mail.process() == 1
    assert mail.subscriber("nobody@example.com") is None
    assert mail.sends("opener") == []


def test_an_event_received_with_the_trigger_does_not_exit_it(h: Harness) -> None:
    h.apply(
        "upd",
        {"type": "event", "event": "subscriber.updated"},
        wait="1d",
        exit_on=[{"event": "purchase"}],
    )
    h.post("signup", fields={"plan": "free"})
    h.at(T0 + HOUR)
    h.post("purchase", fields={"plan": "pro"})  # derived subscriber.updated, then purchase
    h.process()
    [send] = h.sends("upd")
    assert send.status is SendStatus.PENDING
    assert send.trigger_at == T0 + HOUR


# --- isolation of failures ---------------------------------------------------------------


def test_an_event_whose_processing_raises_is_skipped_with_its_error(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from runner.engine.entering import enter as real_enter

    def enter(tx: WriteTx, *args: Any, **kwargs: Any) -> Any:
        subscriber = args[2]
        if subscriber.email == "bad@example.com":
            raise RuntimeError("boom")
        return real_enter(tx, *args, **kwargs)

    monkeypatch.setattr(events_module, "enter", enter)
    h.apply("welcome", {"type": "event", "event": "signup"})
    h.post("signup", "ann@example.com")
    h.post("signup", "bad@example.com", fields={"name": "Bad"})
    h.post("signup", "bob@example.com")
    with caplog.at_level(logging.ERROR, logger="runner.engine.events"):
        assert h.process() == 3
    assert sorted(s.email for s in h.sends("welcome")) == ["ann@example.com", "bob@example.com"]
    assert h.subscriber("bad@example.com") is None, "its writes were rolled back"
    assert h.events("bad@example.com", ["subscriber.added"]) == []
    [failed] = h.read(lambda tx: tx.failed_events(10))
    assert (failed.email, failed.type) == ("bad@example.com", "signup")
    assert failed.error is not None and "RuntimeError: boom" in failed.error
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged == [f"event {failed.seq} (signup) failed and is skipped"]
    assert h.process() == 0, "the failed event is not retried forever"


def test_a_lost_transaction_is_not_taken_for_one_bad_event(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def enter(*args: Any, **kwargs: Any) -> Any:
        raise TransactionAborted("disk full")

    monkeypatch.setattr(events_module, "enter", enter)
    h.apply("welcome", {"type": "event", "event": "signup"})
    h.post("signup")
    with pytest.raises(TransactionAborted):
        h.process()
    assert h.read(lambda tx: tx.failed_events(10)) == []
    assert h.subscriber() is None, "the whole round was rolled back, to be retried"
