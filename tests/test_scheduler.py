"""The scheduler against a real SQLite store: starts, stops, date, schedule and negative email
triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.core.model import EmailAction, EmailTrigger
from runner.core.records import Message, MessageEvent, PendingSend, SendStatus, Subscriber
from runner.engine import scheduler
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from tests.test_apply import Db, apply, automation, db, files, meta, pending

__all__ = ["db"]  # the store fixture, shared with the applier's tests

CTX = EngineContext("UTC", "http://localhost:8080", b"k" * 32)
BIRTHDAY = "{type: date, field: subscriber.fields.birthday}"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def tick(db: Db, now: datetime, budget: int = scheduler.SUBSCRIBER_BUDGET) -> bool:
    def work(tx: Any) -> bool:
        catalog = Catalog.build(tx.automations(), tx.status_changes())
        return scheduler.tick(tx, catalog, CTX, now, budget=budget)

    result: bool = db.write(work)
    return result


def fired(db: Db, ident: str) -> list[tuple[str, datetime]]:
    return sorted((send.email, send.trigger_at) for send in db.sends(ident))


def start(db: Db, ident: str, trigger: str, when: datetime, **options: Any) -> None:
    apply(db, files(automation(ident, trigger=trigger, **options)), when)


def pause(db: Db, ident: str, trigger: str, when: datetime) -> None:
    apply(db, files(automation(ident, "paused", trigger=trigger)), when)


# --- scheduled starts and stop_at ---------------------------------------------------------


def test_scheduled_start_is_recorded_at_start_at_not_at_the_tick(db: Db) -> None:
    text = automation("soon", "scheduled", extra="start_at: 2026-03-02T10:00:00Z\n")
    apply(db, files(text), at("2026-03-02T08:00:00"))
    assert tick(db, at("2026-03-02T09:59:59")) is False
    assert tick(db, at("2026-03-02T12:00:00")) is True
    entry = db.history("soon", "status")[-1]
    assert (entry.previous, entry.value, entry.at) == (
        "scheduled",
        "running",
        at("2026-03-02T10:00"),
    )
    assert db.row("soon").started_at == at("2026-03-02T10:00")
    assert meta(db, "catalog_revision") == "2"
    assert tick(db, at("2026-03-02T13:00:00")) is False
    assert len(db.history("soon", "status")) == 2


def test_stop_at_stops_at_stop_at_and_cancels_sends(db: Db) -> None:
    text = automation("promo", extra="stop_at: 2026-03-03T00:00:00Z\n")
    apply(db, files(text), at("2026-03-02T08:00:00"))
    alice = db.subscriber("alice@example.com")
    pending(db, "promo", alice, at("2026-03-04T00:00"))
    assert tick(db, at("2026-03-02T23:59:59")) is False
    assert tick(db, at("2026-03-03T06:00:00")) is True
    entry = db.history("promo", "status")[-1]
    assert (entry.previous, entry.value, entry.at) == ("running", "stopped", at("2026-03-03T00:00"))
    assert [(s.status, s.reason) for s in db.sends("promo")] == [(SendStatus.CANCELLED, "stopped")]
    assert db.row("promo").stopped_at == at("2026-03-03T00:00")
    live = db.catalog().by_id["promo"]
    assert live.running_at(at("2026-03-02T23:59")) and not live.running_at(at("2026-03-03T00:00"))


def test_start_and_stop_both_missed_are_recorded_in_order(db: Db) -> None:
    extra = "start_at: 2026-03-03T00:00:00Z\nstop_at: 2026-03-04T00:00:00Z\n"
    apply(db, files(automation("short", "scheduled", extra=extra)), at("2026-03-02T08:00"))
    assert tick(db, at("2026-03-10T00:00")) is True
    statuses = [(e.value, e.at) for e in db.history("short", "status")]
    assert statuses == [
        ("scheduled", at("2026-03-02T08:00")),
        ("running", at("2026-03-03T00:00")),
        ("stopped", at("2026-03-04T00:00")),
    ]


# --- date triggers ------------------------------------------------------------------------


def test_feb_29_fires_on_feb_28_in_a_common_year(db: Db) -> None:
    start(db, "bday", BIRTHDAY, at("2027-01-01T00:00"))
    db.subscriber("leap@example.com", birthday="2000-02-29")
    tick(db, at("2027-02-28T08:59:59"))
    assert fired(db, "bday") == []
    tick(db, at("2027-02-28T09:00:30"))
    assert fired(db, "bday") == [("leap@example.com", at("2027-02-28T09:00"))]
    [send] = db.sends("bday")
    assert send.trigger_event == {
        "name": "date",
        "data": {"field": "subscriber.fields.birthday", "date": "2027-02-28"},
    }


def test_offset_at_and_timezone(db: Db) -> None:
    trigger = (
        "{type: date, field: subscriber.fields.birthday, offset: -3d, at: '10:00', "
        "timezone: Asia/Seoul}"
    )
    start(db, "early", trigger, at("2026-05-01T00:00"))
    db.subscriber("kim@example.com", birthday="05-20")
    tick(db, at("2026-05-17T00:59:59"))
    assert fired(db, "early") == []
    tick(db, at("2026-05-17T01:00:01"))  # 10:00 in Seoul, three days before the 20th
    assert fired(db, "early") == [("kim@example.com", at("2026-05-17T01:00"))]
    assert db.sends("early")[0].trigger_event["data"]["date"] == "2026-05-20"


def test_subscriber_timezone_and_runner_default(db: Db) -> None:
    trigger = "{type: date, field: subscriber.fields.birthday, timezone: subscriber}"
    start(db, "local", trigger, at("2026-07-01T00:00"))
    db.subscriber("ny@example.com", birthday="07-04", timezone="America/New_York")
    db.subscriber("utc@example.com", birthday="07-04", timezone="Not/AZone")
    tick(db, at("2026-07-04T10:00"))
    assert fired(db, "local") == [("utc@example.com", at("2026-07-04T09:00"))]
    tick(db, at("2026-07-04T13:00:01"))
    assert ("ny@example.com", at("2026-07-04T13:00")) in fired(db, "local")
    assert len(fired(db, "local")) == 2


# Date and schedule triggers take no `retrigger`: each year and each tick is a new entry,
# deduplicated by the scheduler's claim keys.


def test_at_most_once_per_subscriber_and_year(db: Db) -> None:
    start(db, "bday", BIRTHDAY, at("2026-03-02T00:00"))
    alice = db.subscriber("alice@example.com", birthday="04-01")
    tick(db, at("2026-04-01T09:01"))
    tick(db, at("2026-04-01T09:02"))
    assert fired(db, "bday") == [("alice@example.com", at("2026-04-01T09:00"))]
    moved = Subscriber(alice.id, alice.email, {"birthday": "06-01"}, set(), alice.created_at)
    db.write(lambda tx: tx.save_subscriber(moved))
    tick(db, at("2026-06-01T09:01"))  # a second anniversary in 2026 does not fire
    assert len(fired(db, "bday")) == 1
    tick(db, at("2027-06-01T09:01"))  # next year it fires again
    assert fired(db, "bday")[-1] == ("alice@example.com", at("2027-06-01T09:00"))
    assert len(fired(db, "bday")) == 2


def test_catch_up_fires_the_last_missed_firing_once(db: Db) -> None:
    start(db, "bday", BIRTHDAY, at("2026-01-01T00:00"))
    db.subscriber("alice@example.com", birthday="03-10")
    tick(db, at("2028-06-01T00:00"))  # the runner was down for two and a half years
    assert fired(db, "bday") == [("alice@example.com", at("2028-03-10T09:00"))]
    tick(db, at("2028-06-01T00:01"))
    assert len(fired(db, "bday")) == 1


def test_no_firing_for_a_paused_period_even_after_restart(db: Db) -> None:
    start(db, "bday", BIRTHDAY, at("2026-01-01T00:00"))
    db.subscriber("alice@example.com", birthday="03-10")
    tick(db, at("2026-01-02T00:00"))
    pause(db, "bday", BIRTHDAY, at("2026-03-09T00:00"))
    start(db, "bday", BIRTHDAY, at("2026-03-11T00:00"))  # restarted, nothing ticked meanwhile
    tick(db, at("2026-03-11T00:01"))
    assert fired(db, "bday") == []


def test_audience_at_firing_and_suppressed_subscribers(db: Db) -> None:
    extra = "audience: {field: subscriber.fields.plan, op: eq, value: pro}\n"
    start(db, "bday", BIRTHDAY, at("2026-01-01T00:00"), extra=extra)
    db.subscriber("pro@example.com", birthday="03-10", plan="pro")
    db.subscriber("free@example.com", birthday="03-10", plan="free")
    quiet = db.subscriber("quiet@example.com", birthday="03-10", plan="pro")
    suppressed = Subscriber(
        quiet.id, quiet.email, quiet.fields, set(), quiet.created_at, suppressed="unsubscribed"
    )
    db.write(lambda tx: tx.save_subscriber(suppressed))
    tick(db, at("2026-03-10T09:00:01"))
    assert fired(db, "bday") == [("pro@example.com", at("2026-03-10T09:00"))]


def test_date_sweep_is_bounded_and_resumes(db: Db) -> None:
    start(db, "bday", BIRTHDAY, at("2026-01-01T00:00"))
    for index in range(5):
        db.subscriber(f"s{index}@example.com", birthday="03-10")
    tick(db, at("2026-03-10T09:00:01"), budget=2)
    assert len(fired(db, "bday")) == 2
    tick(db, at("2026-03-10T09:00:02"), budget=2)
    tick(db, at("2026-03-10T09:00:03"), budget=2)
    tick(db, at("2026-03-10T09:00:04"), budget=2)
    assert len(fired(db, "bday")) == 5
    assert {when for _, when in fired(db, "bday")} == {at("2026-03-10T09:00")}


# --- schedule triggers --------------------------------------------------------------------

DAILY = "{type: schedule, cron: '0 9 * * *'}"


def test_cron_tick_fires_once_for_every_subscriber(db: Db) -> None:
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    db.subscriber("alice@example.com")
    db.subscriber("bob@example.com")
    tick(db, at("2026-03-02T08:59:59"))
    assert fired(db, "daily") == []
    tick(db, at("2026-03-02T09:00:10"))
    tick(db, at("2026-03-02T09:00:20"))
    nine = at("2026-03-02T09:00")
    assert fired(db, "daily") == [("alice@example.com", nine), ("bob@example.com", nine)]
    send = db.sends("daily")[0]
    assert send.trigger_event == {"name": "schedule", "data": {"tick": nine.isoformat()}}


def test_cron_catch_up_fires_only_the_last_missed_tick(db: Db) -> None:
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    db.subscriber("alice@example.com")
    tick(db, at("2026-03-05T12:00"))
    assert fired(db, "daily") == [("alice@example.com", at("2026-03-05T09:00"))]


def test_cron_tick_at_the_start_moment_fires(db: Db) -> None:
    text = automation("daily", "scheduled", DAILY, extra="start_at: 2026-03-02T09:00:00Z\n")
    apply(db, files(text), at("2026-03-02T08:00"))
    db.subscriber("alice@example.com")
    tick(db, at("2026-03-02T09:00:05"))
    assert fired(db, "daily") == [("alice@example.com", at("2026-03-02T09:00"))]


def test_no_cron_tick_while_paused(db: Db) -> None:
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    db.subscriber("alice@example.com")
    pause(db, "daily", DAILY, at("2026-03-02T08:30"))
    tick(db, at("2026-03-02T09:30"))
    start(db, "daily", DAILY, at("2026-03-02T10:00"))
    tick(db, at("2026-03-02T10:01"))
    assert fired(db, "daily") == []
    tick(db, at("2026-03-03T09:00:05"))
    assert fired(db, "daily") == [("alice@example.com", at("2026-03-03T09:00"))]


def test_cron_fires_again_at_the_next_tick(db: Db) -> None:
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    db.subscriber("alice@example.com")
    tick(db, at("2026-03-02T09:00:05"))
    tick(db, at("2026-03-03T09:00:05"))
    assert fired(db, "daily") == [
        ("alice@example.com", at("2026-03-02T09:00")),
        ("alice@example.com", at("2026-03-03T09:00")),
    ]


def test_cron_in_the_trigger_timezone(db: Db) -> None:
    trigger = "{type: schedule, cron: '0 9 * * *', timezone: Asia/Seoul}"
    start(db, "seoul", trigger, at("2026-03-02T08:00"))
    db.subscriber("kim@example.com")
    tick(db, at("2026-03-02T09:00:05"))
    assert fired(db, "seoul") == []
    tick(db, at("2026-03-03T00:00:05"))
    assert fired(db, "seoul") == [("kim@example.com", at("2026-03-03T00:00"))]


def test_cron_sweep_is_bounded_and_never_repeats(db: Db) -> None:
    start(db, "daily", DAILY, at("2026-03-02T08:00"))
    for index in range(3):
        db.subscriber(f"s{index}@example.com")
    tick(db, at("2026-03-02T09:00:10"), budget=2)
    assert len(fired(db, "daily")) == 2
    tick(db, at("2026-03-02T09:00:20"), budget=2)
    tick(db, at("2026-03-02T09:00:30"), budget=2)
    assert len(fired(db, "daily")) == 3
    assert len({email for email, _ in fired(db, "daily")}) == 3


# --- not_opened / not_clicked ---------------------------------------------------------------

SENT = at("2026-03-02T10:00")
DEADLINE = SENT + timedelta(days=3)
NOT_OPENED = "{type: email, action: not_opened, automation: intro, within: 3d}"


def message(db: Db, subscriber: Subscriber, listeners: list[str], status: str = "sent") -> Message:
    assert subscriber.id is not None
    send = PendingSend(
        id=f"send-{subscriber.id}",
        automation_id="intro",
        subscriber_id=subscriber.id,
        email=subscriber.email,
        due_at=SENT,
        status=SendStatus.SENT,
        trigger_at=SENT,
        trigger_event={"name": "api", "data": {}},
        created_at=SENT,
        series_id=f"send-{subscriber.id}",
    )
    sent = Message(
        id=f"msg-{subscriber.id}",
        pending_send_id=send.id,
        automation_id="intro",
        subscriber_id=subscriber.id,
        to=subscriber.email,
        from_="Shop <news@shop.example>",
        subject="Hi",
        html=None,
        text="hello",
        headers={},
        provider="default",
        provider_type="outbox",
        provider_message_id=f"msg-{subscriber.id}",
        sent_at=SENT,
        revision=1,
        listeners=listeners,
        status=status,
    )

    def work(tx: Any) -> None:
        tx.insert_pending(send)
        tx.insert_message(sent)

    db.write(work)
    return sent


def provider_event(
    db: Db, sent: Message, kind: str, when: datetime, url: str | None = None
) -> None:
    event = MessageEvent("default", f"{sent.id}-{kind}-{url}", sent.id, kind, when, when, url)
    db.write(lambda tx: tx.insert_message_event(event))


def negative_setup(db: Db, trigger: str = NOT_OPENED) -> None:
    apply(
        db,
        files(automation("intro"), automation("nudge", trigger=trigger)),
        SENT - timedelta(hours=2),
    )


def test_not_opened_fires_at_sent_plus_within_only_without_an_open(db: Db) -> None:
    negative_setup(db)
    alice = db.subscriber("alice@example.com")
    bob = db.subscriber("bob@example.com")
    carol = db.subscriber("carol@example.com")
    unread = message(db, alice, ["nudge"])
    opened = message(db, bob, ["nudge"])
    clicked = message(db, carol, ["nudge"])
    provider_event(db, opened, "opened", SENT + timedelta(days=1))
    provider_event(db, clicked, "clicked", SENT + timedelta(days=2), "https://shop.test/a")
    tick(db, DEADLINE - timedelta(seconds=1))
    assert fired(db, "nudge") == []
    tick(db, DEADLINE + timedelta(seconds=1))
    tick(db, DEADLINE + timedelta(minutes=1))
    assert fired(db, "nudge") == [("alice@example.com", DEADLINE)]
    [send] = db.sends("nudge")
    assert send.trigger_event == {
        "name": "email.not_opened",
        "data": {"automation": "intro", "message_id": unread.id, "sent_at": SENT.isoformat()},
    }


def test_an_open_after_the_deadline_does_not_count(db: Db) -> None:
    negative_setup(db)
    alice = db.subscriber("alice@example.com")
    late = message(db, alice, ["nudge"])
    provider_event(db, late, "opened", DEADLINE + timedelta(hours=1))
    tick(db, DEADLINE + timedelta(hours=2))
    assert fired(db, "nudge") == [("alice@example.com", DEADLINE)]


def test_not_opened_never_fires_when_b_was_not_running_at_the_deadline(db: Db) -> None:
    negative_setup(db)
    alice = db.subscriber("alice@example.com")
    message(db, alice, ["nudge"])
    intro = automation("intro")
    paused = automation("nudge", "paused", trigger=NOT_OPENED)
    report = apply(db, files(intro, paused), DEADLINE - timedelta(hours=1))
    assert report.applied == [("nudge", "paused")]
    tick(db, DEADLINE + timedelta(seconds=1))
    restarted = automation("nudge", trigger=NOT_OPENED)
    apply(db, files(intro, restarted), DEADLINE + timedelta(hours=1))
    tick(db, DEADLINE + timedelta(hours=2))
    assert fired(db, "nudge") == []


def test_not_opened_skips_failed_messages_and_non_listeners(db: Db) -> None:
    negative_setup(db)
    alice = db.subscriber("alice@example.com")
    bob = db.subscriber("bob@example.com")
    message(db, alice, ["nudge"], status="bounced")
    message(db, bob, [])  # sent while nudge was not listening
    tick(db, DEADLINE + timedelta(seconds=1))
    assert fired(db, "nudge") == []


def test_not_clicked_honours_the_link_filter(db: Db) -> None:
    trigger = (
        "{type: email, action: not_clicked, automation: intro, within: 3d, link_contains: /sale}"
    )
    negative_setup(db, trigger)
    alice = db.subscriber("alice@example.com")
    bob = db.subscriber("bob@example.com")
    other = message(db, alice, ["nudge"])
    sale = message(db, bob, ["nudge"])
    provider_event(db, other, "clicked", SENT + timedelta(hours=1), "https://shop.test/about")
    provider_event(db, sale, "clicked", SENT + timedelta(hours=1), "https://shop.test/sale?x=1")
    tick(db, DEADLINE + timedelta(seconds=1))
    assert fired(db, "nudge") == [("alice@example.com", DEADLINE)]
    assert db.sends("nudge")[0].trigger_event["data"]["link"] == "/sale"


@pytest.mark.parametrize(
    ("link", "link_contains", "url", "expected"),
    [
        (None, None, "https://a.test/x", True),
        ("https://a.test/x", None, "https://a.test/x", True),
        ("https://a.test/x", None, "https://a.test/x?y", False),
        (None, "/x", "https://a.test/x?y", True),
        (None, "/x", None, False),
    ],
)
def test_link_matches(
    link: str | None, link_contains: str | None, url: str | None, expected: bool
) -> None:
    trigger = EmailTrigger(
        type="email",
        action=EmailAction.NOT_CLICKED,
        automation="intro",
        link=link,
        link_contains=link_contains,
        within="1m",
    )
    assert trigger.matches_link(url) is expected
