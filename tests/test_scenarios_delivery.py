"""Delivery scenarios end to end: the real HTTP API on a SQLite file with the fake clock.

Each test drives the runner only through its API (events, provider webhooks, the api
trigger, the unsubscribe link) and checks exact outcomes in the outbox, the pending sends
and the stats (docs/events.md).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from runner.core.records import PendingSend, SendStatus
from tests.harness import START, Harness, write_repo

FROM = 'from: "Shop <news@shop.test>"'
WEBHOOK = "/v1/providers/default/webhook"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)

INTRO = f"""\
id: intro
status: running
trigger:
  type: event
  event: signup
email:
  {FROM}
  subject: Our product
  text: "Hello {{{{ unsubscribe_url }}}}"
"""


def automation(ident: str, body: str, *, status: str = "running") -> str:
    """An automation file: id, status, then `body` (trigger and the rest), then an email."""
    return (
        f"id: {ident}\nstatus: {status}\n{body.rstrip()}\n"
        f"email:\n  {FROM}\n  subject: {ident} {{{{ event.name }}}}\n  text: Hi\n"
    )


def outbox(h: Harness, automation_id: str) -> list[dict[str, Any]]:
    """Messages of one automation, oldest first."""
    response = h.http.get("/v1/outbox", params={"automation": automation_id, "limit": 1000})
    messages: list[dict[str, Any]] = response.json()["messages"]
    return list(reversed(messages))


def recipients(h: Harness, automation_id: str) -> list[str]:
    """Recipients of one automation's messages, oldest first."""
    return [m["to"] for m in outbox(h, automation_id)]


def sends(h: Harness, automation_id: str, *statuses: SendStatus) -> list[PendingSend]:
    """Sends of one automation in the given statuses (every status when none is named)."""
    wanted = list(statuses or SendStatus)
    return h.read(lambda tx: tx.pending_sends(automation_id, wanted, 1000))


def cancelled(h: Harness, automation_id: str) -> list[tuple[str, str | None]]:
    """(email, reason) of the cancelled sends of one automation, sorted."""
    return sorted((s.email, s.reason) for s in sends(h, automation_id, SendStatus.CANCELLED))


def post(h: Harness, event_type: str, email: str, **extra: Any) -> None:
    """POST one event (a unique id) and require 202."""
    response = h.post_event(event_type, email, **extra)
    assert response.status_code == 202, response.text


def feedback(h: Harness, event_id: str, kind: str, message_id: str, **extra: Any) -> None:
    """POST one outbox provider event and require it stored."""
    body = {"id": event_id, "type": kind, "message_id": message_id, **extra}
    response = h.http.post(WEBHOOK, json=body)
    assert response.status_code == 202, response.text
    assert response.json()["results"] == [{"id": event_id, "status": "stored"}]


def message_to(h: Harness, automation_id: str, email: str) -> dict[str, Any]:
    """The only message of an automation to `email`."""
    found = [m for m in outbox(h, automation_id) if m["to"] == email]
    assert len(found) == 1, found
    return found[0]


def later(h: Harness, delta: timedelta) -> None:
    """Move the fake clock and let the engine do everything due."""
    h.advance(delta)
    h.drain()


# --- 1. not_opened within 3d ---------------------------------------------------------

NUDGE = automation(
    "nudge",
    """\
start_at: 2026-03-02T10:00:00Z
trigger:
  type: email
  action: not_opened
  automation: intro
  within: 3d
""",
    status="scheduled",
)


def test_not_opened_within_three_days(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"intro": INTRO, "nudge": NUDGE})) as h:
        post(h, "signup", "early@shop.test")  # intro sent before nudge runs
        h.drain()
        later(h, 2 * HOUR)  # nudge started at 10:00
        post(h, "signup", "quiet@shop.test")
        post(h, "signup", "opener@shop.test")
        h.drain()
        assert sorted(recipients(h, "intro")[1:]) == ["opener@shop.test", "quiet@shop.test"]
        opened = message_to(h, "intro", "opener@shop.test")
        later(h, 2 * DAY)
        feedback(h, "open-1", "opened", opened["id"])
        h.drain()
        later(h, DAY - SECOND)  # one second before the 3-day deadline
        assert recipients(h, "nudge") == []
        later(h, 2 * SECOND)
        assert recipients(h, "nudge") == ["quiet@shop.test"]
        assert outbox(h, "nudge")[0]["subject"] == "nudge email.not_opened"
        later(h, 7 * DAY)  # nothing more, ever: at most once per source message
        assert recipients(h, "nudge") == ["quiet@shop.test"]
        assert message_to(h, "intro", "early@shop.test")["listeners"] == []
        assert opened["listeners"] == ["nudge"]


# --- 2. the api trigger ---------------------------------------------------------------

VIP = """\
id: vip
status: running
retrigger: {cooldown: 1h}
audience: {field: subscriber.fields.tier, op: eq, value: gold}
trigger:
  type: api
email:
  from: "Shop <news@shop.test>"
  subject: "VIP {{ subscriber.fields.tier }}"
  text: "{{ subscriber.fields.name }} is {{ event.data.tier }}"
"""
ONCE = automation("once", "trigger:\n  type: api\n")
RESTING = automation("resting", "trigger:\n  type: api\n", status="draft")
SIGNUP = automation("signed", "trigger:\n  type: event\n  event: signup\n")


def trigger(h: Harness, automation_id: str, email: str, **data: Any) -> httpx.Response:
    """POST /v1/automations/{id}/trigger."""
    body = {"subscriber": email, "data": data}
    return h.http.post(f"/v1/automations/{automation_id}/trigger", json=body)


def refused(h: Harness, automation_id: str, email: str, **data: Any) -> str:
    """The reason of a trigger call that was not accepted (200)."""
    response = trigger(h, automation_id, email, **data)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["accepted"] is False
    reason: str = answer["reason"]
    return reason


def test_api_trigger_data_overrides_fields_for_that_send_only(tmp_path: Path) -> None:
    repo = write_repo(tmp_path, {"vip": VIP, "once": ONCE, "resting": RESTING, "signed": SIGNUP})
    with Harness(repo) as h:
        vera = {"fields": {"tier": "silver", "name": "Vera"}}
        post(h, "profile", "vera@shop.test", subscriber=vera)
        post(h, "profile", "sam@shop.test", subscriber={"fields": {"tier": "silver"}})
        h.drain()
        accepted = trigger(h, "vip", "Vera@Shop.test", tier="gold")
        assert accepted.status_code == 202
        send_id = accepted.json()["pending_send_id"]
        assert accepted.json() == {"accepted": True, "pending_send_id": send_id}
        plain = trigger(h, "vip", "sam@shop.test")  # audience fails without the overlay
        assert plain.status_code == 202
        h.drain()
        [message] = outbox(h, "vip")
        assert (message["to"], message["subject"], message["text"]) == (
            "vera@shop.test",
            "VIP gold",
            "Vera is gold",
        )
        assert message["pending_send_id"] == send_id
        stored = h.read(lambda tx: tx.subscriber("vera@shop.test"))
        assert stored is not None and stored.fields == {"tier": "silver", "name": "Vera"}
        assert cancelled(h, "vip") == [("sam@shop.test", "audience")]

        # every reason a call is not accepted
        assert refused(h, "vip", "vera@shop.test", tier="gold") == "cooldown"
        assert refused(h, "vip", "nobody@shop.test") == "not_a_subscriber"
        assert refused(h, "resting", "vera@shop.test") == "not_running"
        assert trigger(h, "once", "vera@shop.test").status_code == 202
        assert refused(h, "once", "vera@shop.test") == "already_entered"
        post(h, "subscriber.unsubscribed", "sam@shop.test")
        h.drain()
        later(h, HOUR + SECOND)
        assert refused(h, "vip", "sam@shop.test", tier="gold") == "suppressed"
        assert (s := sends(h, "vip", SendStatus.CANCELLED)) and s[-1].reason == "suppressed"
        assert trigger(h, "vip", "vera@shop.test", tier="gold").status_code == 202  # cooled
        h.drain()
        assert recipients(h, "vip") == ["vera@shop.test", "vera@shop.test"]
        assert recipients(h, "once") == ["vera@shop.test"]

        missing = trigger(h, "nope", "vera@shop.test")
        assert (missing.status_code, missing.json()["error"]) == (404, "unknown_automation")
        wrong = trigger(h, "signed", "vera@shop.test")
        assert (wrong.status_code, wrong.json()["error"]) == (409, "trigger_not_api")


# --- 3. suppression --------------------------------------------------------------------

WELCOME = automation("welcome", "trigger:\n  type: event\n  event: signup\n")
FOLLOW = automation("follow", "retrigger: true\nwait: 1d\ntrigger:\n  type: event\n  event: ping\n")
PEOPLE = ("unsub", "link", "hard", "complain", "soft")


def email(name: str) -> str:
    return f"{name}@shop.test"


def suppression(h: Harness, address: str) -> str | None:
    """The stored subscriber's suppression reason."""
    subscriber = h.read(lambda tx: tx.subscriber(address))
    assert subscriber is not None
    return subscriber.suppressed


def test_suppressed_subscribers_get_nothing_later(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"welcome": WELCOME, "follow": FOLLOW})) as h:
        for name in PEOPLE:
            post(h, "signup", email(name))
            post(h, "ping", email(name))
        h.drain()
        assert sorted(recipients(h, "welcome")) == sorted(email(n) for n in PEOPLE)
        assert len(sends(h, "follow", SendStatus.PENDING)) == 5

        post(h, "subscriber.unsubscribed", email("unsub"))
        header = message_to(h, "welcome", email("link"))["headers"]["List-Unsubscribe"]
        link = urlsplit(header.strip("<>")).path
        done = h.http.post(link, content=b"List-Unsubscribe=One-Click")
        assert done.status_code == 200
        hard = message_to(h, "welcome", email("hard"))["id"]
        feedback(h, "b-hard", "bounced", hard, bounce="hard")
        complaint = message_to(h, "welcome", email("complain"))["id"]
        feedback(h, "b-complain", "complained", complaint)
        soft = message_to(h, "welcome", email("soft"))["id"]
        feedback(h, "b-soft", "bounced", soft, bounce="soft")
        h.drain()
        assert {n: suppression(h, email(n)) for n in PEOPLE} == {
            "unsub": "unsubscribed",
            "link": "unsubscribed",
            "hard": "bounced",
            "complain": "complained",
            "soft": None,
        }

        later(h, DAY + SECOND)  # the pending follow-ups fall due: cancelled at send time
        assert recipients(h, "follow") == [email("soft")]
        suppressed = sorted((email(n), "suppressed") for n in PEOPLE if n != "soft")
        assert cancelled(h, "follow") == suppressed

        for name in PEOPLE:  # a new trigger: a send cancelled `suppressed` at once
            post(h, "ping", email(name))
        h.drain()
        assert cancelled(h, "follow") == sorted(suppressed * 2)
        assert [s.email for s in sends(h, "follow", SendStatus.PENDING)] == [email("soft")]
        later(h, DAY + SECOND)
        assert recipients(h, "follow") == [email("soft")] * 2
        assert sorted(recipients(h, "welcome")) == sorted(email(n) for n in PEOPLE)  # once each


# --- 4. audience at send time ----------------------------------------------------------

PROMO = automation(
    "promo",
    """\
wait: 1d
audience: {field: subscriber.fields.plan, op: eq, value: pro}
trigger:
  type: event
  event: visit
""",
)


def test_audience_is_checked_at_send_time(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"promo": PROMO})) as h:
        post(h, "visit", "leaver@shop.test", subscriber={"fields": {"plan": "pro"}})
        post(h, "visit", "joiner@shop.test", subscriber={"fields": {"plan": "free"}})
        h.drain()
        pending = sorted(s.email for s in sends(h, "promo", SendStatus.PENDING))
        assert pending == ["joiner@shop.test", "leaver@shop.test"]
        later(h, 12 * HOUR)
        post(h, "profile", "leaver@shop.test", subscriber={"fields": {"plan": "free"}})
        post(h, "profile", "joiner@shop.test", subscriber={"fields": {"plan": "pro"}})
        h.drain()
        later(h, 12 * HOUR)
        assert recipients(h, "promo") == ["joiner@shop.test"]
        assert cancelled(h, "promo") == [("leaver@shop.test", "audience")]


# --- 5. email triggers count only sends made after the listener started --------------------

THANKS = automation(
    "thanks",
    """\
start_at: 2026-03-02T10:00:00Z
trigger:
  type: email
  action: opened
  automation: intro
""",
    status="scheduled",
)


def test_email_trigger_counts_only_sends_after_start(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"intro": INTRO, "thanks": THANKS})) as h:
        post(h, "signup", "before@shop.test")
        h.drain()
        later(h, 2 * HOUR)  # thanks is running from 10:00
        post(h, "signup", "after@shop.test")
        h.drain()
        early = message_to(h, "intro", "before@shop.test")
        late = message_to(h, "intro", "after@shop.test")
        assert (early["listeners"], late["listeners"]) == ([], ["thanks"])
        feedback(h, "o-before", "opened", early["id"])
        feedback(h, "o-after", "clicked", late["id"], url="https://shop.test/x")  # an open too
        h.drain()
        assert [(m["to"], m["subject"]) for m in outbox(h, "thanks")] == [
            ("after@shop.test", "thanks email.opened")
        ]
        later(h, DAY)
        assert recipients(h, "thanks") == ["after@shop.test"]


# --- 6. stats ----------------------------------------------------------------------------

COUNTED = automation(
    "counted",
    """\
retrigger: true
wait: 1h
audience: {not: {in_group: blocked}}
exit_on:
  - event: bought
trigger:
  type: event
  event: go
""",
)
IDLE = automation("idle", "trigger:\n  type: event\n  event: go\n", status="draft")
SOON = automation(
    "soon",
    "start_at: 2026-03-03T09:00:00Z\ntrigger:\n  type: event\n  event: go\n",
    status="scheduled",
)


def stats(h: Harness, automation_id: str) -> Any:
    response = h.http.get(f"/v1/automations/{automation_id}/stats")
    assert response.status_code == 200
    return response.json()


def test_stats_counts_and_rates(tmp_path: Path) -> None:
    repo = write_repo(tmp_path, {"counted": COUNTED, "idle": IDLE, "soon": SOON})
    with Harness(repo) as h:
        not_started = {"stats": None, "reason": "not_started"}
        assert stats(h, "idle") == not_started
        assert stats(h, "soon") == not_started
        people = [f"s{i}@shop.test" for i in range(1, 11)]
        post(h, "subscriber.unsubscribed", people[7])  # s8: suppressed when triggered
        for person in people[:9]:
            post(h, "go", person)
        later(h, timedelta(minutes=1))
        post(h, "profile", people[5], subscriber={"groups": ["blocked"]})  # s6 leaves
        post(h, "bought", people[6])  # s7 exits
        [removed] = [s for s in sends(h, "counted", SendStatus.PENDING) if s.email == people[8]]
        assert h.http.delete(f"/v1/automations/counted/pending/{removed.id}").status_code == 200
        h.drain()
        later(h, HOUR + SECOND)
        assert sorted(recipients(h, "counted")) == people[:5]
        post(h, "go", people[9])  # s10 stays pending
        h.drain()
        ids = {m["to"]: m["id"] for m in outbox(h, "counted")}
        feedback(h, "f1", "opened", ids[people[0]])
        feedback(h, "f2", "opened", ids[people[0]])  # a second open of the same message
        feedback(h, "f3", "unsubscribed", ids[people[0]])
        feedback(h, "f4", "clicked", ids[people[1]], url="https://shop.test/a")
        feedback(h, "f5", "clicked", ids[people[1]], url="https://shop.test/b")
        feedback(h, "f6", "bounced", ids[people[2]], bounce="hard")
        feedback(h, "f7", "complained", ids[people[3]])
        feedback(h, "f8", "bounced", ids[people[4]], bounce="soft")
        feedback(h, "f9", "delivered", ids[people[4]])
        h.drain()
        assert stats(h, "counted") == {
            "stats": {
                "triggered": 10,
                "pending": 1,
                "sent": 5,
                "delivered": 5,
                "opened": 2,
                "clicked": 1,
                "unique_openers": 2,
                "unique_clickers": 1,
                "bounced_hard": 1,
                "bounced_soft": 1,
                "complained": 1,
                "unsubscribed": 1,
                "failed": 0,
                "outcome_unknown": 0,
                "cancelled": {"audience": 1, "exit_on": 1, "removed": 1, "suppressed": 1},
                "open_rate": 0.4,
                "click_rate": 0.2,
            }
        }
        later(h, DAY)  # soon starts: it has stats from then on, idle still none
        assert stats(h, "soon")["stats"]["triggered"] == 0
        assert stats(h, "idle") == not_started


SERIES = automation(
    "series",
    "retrigger: true\nwait: 1h\nrepeat: {every: 1d, times: 2}\n"
    "trigger:\n  type: event\n  event: go\n",
)


def test_stats_count_a_trigger_that_reanchors_a_repeat(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"series": SERIES})) as h:
        post(h, "go", "again@shop.test")
        later(h, HOUR + SECOND)  # the first email; repeat 1 waits a day
        post(h, "go", "again@shop.test")  # accepted: re-anchors repeat 1
        h.drain()
        counts = stats(h, "series")["stats"]
        assert (counts["sent"], counts["pending"], counts["cancelled"]) == (
            1,
            1,
            {"reanchored": 1},
        )
        assert counts["triggered"] == 2


# --- 7. duplicate event ids --------------------------------------------------------------

GREET = automation("greet", "retrigger: true\ntrigger:\n  type: event\n  event: signup\n")


def test_duplicate_event_ids_are_processed_once(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"greet": GREET})) as h:
        post(h, "profile", "dup@shop.test", subscriber={"fields": {"n": 0}})
        h.drain()
        person = {"email": "dup@shop.test", "fields": {"n": 1}}
        body = {"id": "evt-1", "type": "signup", "subscriber": person}
        answers = [h.http.post("/v1/events", json=body) for _ in range(2)]
        h.drain()
        answers.append(h.http.post("/v1/events", json=body))
        h.drain()
        assert [a.status_code for a in answers] == [202, 202, 202]
        assert [a.json()["results"][0]["status"] for a in answers] == [
            "stored",
            "duplicate",
            "duplicate",
        ]
        assert recipients(h, "greet") == ["dup@shop.test"]
        kinds = ["subscriber.updated", "signup"]
        updates = h.read(lambda tx: tx.events_after("dup@shop.test", kinds, START - SECOND))
        assert sorted((e.type, e.data.get("changed")) for e in updates) == [
            ("signup", None),
            ("subscriber.updated", ["n"]),
        ]


# --- 8. an invalid event in a batch --------------------------------------------------------


def test_invalid_event_in_batch_stores_nothing(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"greet": GREET})) as h:
        good = [
            {"id": f"g{i}", "type": "signup", "subscriber": {"email": f"g{i}@shop.test"}}
            for i in range(3)
        ]
        bad = {"id": "g3", "type": "Sign Up", "subscriber": {"email": "g3@shop.test"}}
        response = h.http.post("/v1/events", json={"events": [good[0], good[1], bad, good[2]]})
        assert response.status_code == 422
        answer = response.json()
        assert (answer["index"], answer["field"]) == (2, "events[2].type")
        h.drain()
        assert h.write(lambda tx: tx.unprocessed_events(10)) == []
        events = h.read(lambda tx: tx.events_after("g0@shop.test", ["signup"], START - DAY))
        assert events == []
        addresses = [f"g{i}@shop.test" for i in range(4)]
        assert h.read(lambda tx: [tx.subscriber(a) for a in addresses]) == [None] * 4
        assert recipients(h, "greet") == []
        fixed = h.http.post("/v1/events", json={"events": good})  # the same ids, now stored
        assert [r["status"] for r in fixed.json()["results"]] == ["stored"] * 3
        h.drain()
        assert sorted(recipients(h, "greet")) == [f"g{i}@shop.test" for i in range(3)]


# --- 9. a render error fails one send ------------------------------------------------------

NAMED = """\
id: named
status: running
trigger:
  type: event
  event: signup
email:
  from: "Shop <news@shop.test>"
  subject: "Hi {{ subscriber.fields.name }}"
  text: "Hello"
"""


def test_render_error_fails_one_send_and_the_loop_goes_on(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"named": NAMED})) as h:
        batch = [
            {"id": name, "type": "signup", "subscriber": {"email": email(name), **fields}}
            for name, fields in [
                ("ann", {"fields": {"name": "Ann"}}),
                ("nameless", {}),
                ("bob", {"fields": {"name": "Bob"}}),
            ]
        ]
        assert h.http.post("/v1/events", json={"events": batch}).status_code == 202
        h.drain()
        assert sorted((m["to"], m["subject"]) for m in outbox(h, "named")) == [
            (email("ann"), "Hi Ann"),
            (email("bob"), "Hi Bob"),
        ]
        [failed] = sends(h, "named", SendStatus.FAILED)
        assert (failed.email, failed.reason) == (email("nameless"), "render_error")
        assert failed.last_error is not None
        assert failed.last_error.startswith("subject:")
        assert "name" in failed.last_error
        assert stats(h, "named")["stats"]["failed"] == 1
        h.advance(SECOND)
        post(h, "signup", "carl@shop.test", subscriber={"fields": {"name": "Carl"}})
        h.drain()
        assert recipients(h, "named")[-1] == "carl@shop.test"


# --- exit_on an event of the same batch ------------------------------------------------------

BASKET = automation(
    "basket",
    """\
wait: 1h
exit_on:
  - event: bought
trigger:
  type: event
  event: cart
""",
)


def test_exit_on_event_later_in_the_same_batch(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"basket": BASKET})) as h:
        batch = [
            {"id": "c1", "type": "cart", "subscriber": {"email": "cart@shop.test"}},
            {"id": "c2", "type": "bought", "subscriber": {"email": "cart@shop.test"}},
        ]
        assert h.http.post("/v1/events", json={"events": batch}).status_code == 202
        h.drain()
        later(h, HOUR + SECOND)
        assert recipients(h, "basket") == []
        assert cancelled(h, "basket") == [("cart@shop.test", "exit_on")]


def test_link_unsubscribe_counts_in_the_automation_stats(tmp_path: Path) -> None:
    with Harness(write_repo(tmp_path, {"welcome": WELCOME})) as h:
        post(h, "signup", "gone@shop.test")
        h.drain()
        header = message_to(h, "welcome", "gone@shop.test")["headers"]["List-Unsubscribe"]
        done = h.http.post(urlsplit(header.strip("<>")).path, content=b"List-Unsubscribe=One-Click")
        assert done.status_code == 200
        h.drain()
        assert suppression(h, "gone@shop.test") == "unsubscribed"
        assert stats(h, "welcome")["stats"]["unsubscribed"] == 1
