"""Event-format scenarios end to end: the real HTTP API on a real store with the fake clock.

Client lifecycle events (`subscriber.added` / `subscriber.updated` posted by the client),
explicit group joins, retrigger without a repeat series, and provider events as triggers:
every open and click, soft bounces (docs/events.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.records import SendStatus
from tests.harness import START, Harness, write_repo
from tests.test_scenarios_delivery import (
    DAY,
    HOUR,
    SECOND,
    automation,
    feedback,
    later,
    message_to,
    outbox,
    recipients,
    sends,
    stats,
)


def event(event_id: str, kind: str, email: str, **extra: Any) -> dict[str, Any]:
    """One event body for `POST /v1/events`."""
    return {"id": event_id, "type": kind, "subscriber": {"email": email}, **extra}


def post(h: Harness, *events: dict[str, Any]) -> list[str]:
    """POST one event (or a batch of several); the per-event statuses of the 202."""
    body = events[0] if len(events) == 1 else {"events": list(events)}
    response = h.http.post("/v1/events", json=body)
    assert response.status_code == 202, response.text
    return [result["status"] for result in response.json()["results"]]


def subjects(h: Harness, automation_id: str) -> list[tuple[str, str]]:
    """(to, subject) of one automation's messages, oldest first."""
    return [(m["to"], m["subject"]) for m in outbox(h, automation_id)]


# --- client subscriber.added: created once, data for `where` -------------------------------

WELCOME = """\
id: welcome
status: running
trigger:
  type: event
  event: subscriber.added
  where: {field: event.data.source, op: ne, value: admin}
email:
  from: "Shop <news@shop.test>"
  subject: "welcome {{ event.data.source | default('-') }}"
  text: Hi
"""
ADMIN_NOTE = automation(
    "admin-note",
    "trigger:\n  type: event\n  event: subscriber.added\n"
    "  where: {field: event.data.source, op: eq, value: admin}\n",
)
CHANGED = """\
id: changed
status: running
retrigger: true
trigger:
  type: event
  event: subscriber.updated
email:
  from: "Shop <news@shop.test>"
  subject: "{{ event.data.changed | join(',') }} via {{ event.data.source | default('-') }}"
  text: Hi
"""


def test_client_subscriber_added_creates_and_fires_once_with_its_data(tmp_path: Path) -> None:
    files = {"welcome": WELCOME, "admin-note": ADMIN_NOTE, "changed": CHANGED}
    with Harness(write_repo(tmp_path, files)) as h:
        form = {"source": "form"}
        assert post(h, event("a1", "subscriber.added", "form@shop.test", data=form)) == ["stored"]
        admin = event("a2", "subscriber.added", "ops@shop.test", data={"source": "admin"})
        assert post(h, admin) == ["stored"]
        h.drain()
        assert subjects(h, "welcome") == [("form@shop.test", "welcome form")]
        assert recipients(h, "admin-note") == ["ops@shop.test"]

        # The same email again: only an upsert, with `subscriber.updated` for what changed.
        again = event(
            "a3",
            "subscriber.added",
            "form@shop.test",
            subscriber={"email": "form@shop.test", "fields": {"plan": "pro"}},
            data={"source": "import"},
        )
        assert post(h, again) == ["stored"]
        assert post(h, again) == ["duplicate"]  # the same id: acknowledged, not processed
        h.drain()
        assert subjects(h, "welcome") == [("form@shop.test", "welcome form")]
        assert subjects(h, "changed") == [("form@shop.test", "plan via import")]
        person = h.read(lambda tx: tx.subscriber("form@shop.test"))
        assert person is not None and person.fields == {"plan": "pro"}

        # Two sign-ups of one new email in one batch: the second finds the subscriber.
        twice = [
            event("b1", "subscriber.added", "twice@shop.test", data={"source": "form"}),
            event("b2", "subscriber.added", "twice@shop.test", data={"source": "form"}),
        ]
        assert post(h, *twice) == ["stored", "stored"]
        h.drain()
        assert sorted(recipients(h, "welcome")) == ["form@shop.test", "twice@shop.test"]
        added = h.read(
            lambda tx: tx.events_after("twice@shop.test", ["subscriber.added"], START - SECOND)
        )
        # The two client events and one derived event: the trigger fired once.
        assert sorted((e.id is None, e.data.get("source")) for e in added) == [
            (False, "form"),
            (False, "form"),
            (True, "form"),
        ]


def test_client_subscriber_updated_fires_only_on_a_change(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"welcome": WELCOME, "changed": CHANGED})) as h:
        fields = {"email": "crm@shop.test", "fields": {"plan": "free"}}
        first = event("u1", "subscriber.updated", "crm@shop.test", subscriber=fields)
        post(h, first)  # a new email: it is added (welcome), not updated
        h.drain()
        assert subjects(h, "welcome") == [("crm@shop.test", "welcome -")]
        assert outbox(h, "changed") == []
        h.advance(SECOND)
        upgrade = {"email": "crm@shop.test", "fields": {"plan": "pro"}}
        data = {"source": "crm", "changed": ["spoofed"]}  # the runner's own keys win
        post(h, event("u2", "subscriber.updated", "crm@shop.test", subscriber=upgrade, data=data))
        post(h, event("u3", "subscriber.updated", "crm@shop.test", subscriber=upgrade))
        h.drain()
        assert subjects(h, "changed") == [("crm@shop.test", "plan via crm")]
        assert recipients(h, "welcome") == ["crm@shop.test"]


def test_email_event_names_stay_reserved(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"welcome": WELCOME})) as h:
        response = h.http.post("/v1/events", json=event("x", "email.opened", "a@shop.test"))
        assert response.status_code == 422
        assert response.json()["field"] == "type"
        assert "email." in response.json()["message"]


# --- explicit group.joined: never at creation ----------------------------------------------

VIP = automation(
    "vip", "retrigger: true\ntrigger:\n  type: event\n  event: group.joined\n  group: vip\n"
)
HELLO = automation("hello", "trigger:\n  type: event\n  event: subscriber.added\n")


def test_explicit_join_fires_only_for_a_subscriber_who_existed(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"vip": VIP, "hello": HELLO})) as h:
        vip = {"group": "vip"}
        post(h, event("j1", "group.joined", "new@shop.test", data=vip))
        post(h, event("s1", "signup", "old@shop.test"))
        h.drain()
        assert recipients(h, "vip") == []
        assert sorted(recipients(h, "hello")) == ["new@shop.test", "old@shop.test"]
        new = h.read(lambda tx: tx.subscriber("new@shop.test"))
        assert new is not None and new.groups == {"vip"}
        h.advance(SECOND)
        post(h, event("j2", "group.joined", "old@shop.test", data=vip))
        h.drain()
        assert recipients(h, "vip") == ["old@shop.test"]


# --- retrigger without repeat: every accepted trigger is its own email ---------------------

FOLLOW_UP = automation(
    "follow-up",
    "retrigger: true\nwait: 1d\ntrigger:\n  type: event\n  event: order\n",
)


def test_two_orders_an_hour_apart_get_two_follow_ups(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"follow-up": FOLLOW_UP})) as h:
        post(h, event("o1", "order", "buyer@shop.test"))
        later(h, HOUR)
        post(h, event("o2", "order", "buyer@shop.test"))
        h.drain()
        pending = sorted(s.due_at for s in sends(h, "follow-up", SendStatus.PENDING))
        assert pending == [START + DAY, START + DAY + HOUR]
        later(h, DAY - HOUR)
        later(h, HOUR)
        assert [m["sent_at"] for m in outbox(h, "follow-up")] == [
            "2026-03-03T09:00:00Z",
            "2026-03-03T10:00:00Z",
        ]
        assert sends(h, "follow-up", SendStatus.CANCELLED) == []


# --- provider events: every open and click is a trigger ------------------------------------

INTRO = automation("intro", "trigger:\n  type: event\n  event: signup\n")
OPENED = automation(
    "on-open", "retrigger: true\ntrigger:\n  type: email\n  action: opened\n  automation: intro\n"
)
CLICKED = automation(
    "on-sale",
    "retrigger: true\ntrigger:\n  type: email\n  action: clicked\n  automation: intro\n"
    "  link_contains: /sale\n",
)
OPENED_ONCE = automation(
    "open-once", "trigger:\n  type: email\n  action: opened\n  automation: intro\n"
)


def test_every_open_and_click_is_a_trigger_and_stats_stay_unique(tmp_path: Path) -> None:
    files = {"intro": INTRO, "on-open": OPENED, "on-sale": CLICKED, "open-once": OPENED_ONCE}
    with Harness(write_repo(tmp_path, files)) as h:
        post(h, event("s1", "signup", "reader@shop.test"))
        h.drain()
        intro = message_to(h, "intro", "reader@shop.test")["id"]
        sale = "https://shop.test/sale"
        for step, (event_id, kind, extra) in enumerate(
            [
                ("p1", "opened", {}),
                ("p2", "opened", {}),  # a second open
                ("p3", "clicked", {"url": sale}),  # a click also counts as an open
                ("p4", "clicked", {"url": sale}),  # a second click on the same link
                ("p5", "clicked", {"url": "https://shop.test/about"}),
            ]
        ):
            h.advance(step * SECOND)
            feedback(h, event_id, kind, intro, **extra)
        replay = {"id": "p4", "type": "clicked", "message_id": intro, "url": sale}
        answer = h.http.post("/v1/providers/default/webhook", json=replay).json()
        assert answer["results"] == [{"id": "p4", "status": "duplicate"}]
        h.drain()
        assert len(recipients(h, "on-open")) == 5  # two opens and three clicks
        assert len(recipients(h, "on-sale")) == 2  # the two clicks on /sale
        assert recipients(h, "open-once") == ["reader@shop.test"]  # retrigger: false
        counts = stats(h, "intro")["stats"]
        assert (counts["opened"], counts["clicked"], counts["unique_openers"]) == (1, 1, 1)
        assert counts["open_rate"] == counts["click_rate"] == 1.0


# --- soft bounces fire `failed` and do not suppress ---------------------------------------

RETRY = automation(
    "retry", "retrigger: true\ntrigger:\n  type: email\n  action: failed\n  automation: intro\n"
)


def test_soft_bounce_fires_failed_without_suppressing(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"intro": INTRO, "retry": RETRY})) as h:
        post(h, event("s1", "signup", "full@shop.test"))
        post(h, event("s2", "signup", "gone@shop.test"))
        h.drain()
        full = message_to(h, "intro", "full@shop.test")["id"]
        gone = message_to(h, "intro", "gone@shop.test")["id"]
        later(h, HOUR)
        feedback(h, "b1", "bounced", full, bounce="soft")
        feedback(h, "b2", "bounced", gone, bounce="hard")
        h.drain()
        assert subjects(h, "retry") == [("full@shop.test", "retry email.failed")]
        # The hard bounce fired too, but suppressed its subscriber first.
        cancelled = [(s.email, s.reason) for s in sends(h, "retry", SendStatus.CANCELLED)]
        assert cancelled == [("gone@shop.test", "suppressed")]
        people = h.read(
            lambda tx: [tx.subscriber("full@shop.test"), tx.subscriber("gone@shop.test")]
        )
        assert [p.suppressed if p else "missing" for p in people] == [None, "bounced"]
        counts = stats(h, "intro")["stats"]
        assert (counts["bounced_soft"], counts["bounced_hard"], counts["failed"]) == (1, 1, 0)
