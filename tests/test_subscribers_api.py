"""The subscribers API and the `api` trigger's read-your-writes, end to end: the real app
under uvicorn on a real store (SQLite, or PostgreSQL with POSTWRIGHT_TEST_STORE=postgres),
driven over HTTP with a fake clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.server.api.models import RequestError
from runner.server.api.subscriber_views import after_cursor, cursor_of
from runner.store.postgres_write import ENGINE_LOCK
from tests import harness
from tests.harness import WELCOME, Harness, write_repo

VIP = """\
id: vip
status: running
retrigger: true
trigger:
  type: api
email:
  from: "Shop <news@shop.test>"
  subject: "VIP {{ subscriber.fields.tier | default('member') }}"
  text: "Hello {{ subscriber.fields.name | default('you') }}"
"""
REMINDER = """\
id: reminder
status: running
retrigger: true
trigger:
  type: event
  event: signup
wait: 1d
email:
  from: "Shop <news@shop.test>"
  subject: Reminder
  text: "Hi"
"""
JOINED = """\
id: joined
status: running
trigger:
  type: event
  event: group.joined
  group: vip
email:
  from: "Shop <news@shop.test>"
  subject: Welcome to VIP
  text: "Hi"
"""
KEYS = {"POSTWRIGHT_API_KEYS": "key-1", "POSTWRIGHT_PUBLIC_URL": "https://mail.shop.test"}
AUTH = {"Authorization": "Bearer key-1"}
WEBHOOK = "/v1/providers/default/webhook"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Harness]:
    write_repo(tmp_path, {"welcome": WELCOME, "vip": VIP, "reminder": REMINDER, "joined": JOINED})
    with Harness(tmp_path) as h:
        yield h


def trigger(h: Harness, subscriber: Any, **extra: Any) -> Any:
    return h.http.post("/v1/automations/vip/trigger", json={"subscriber": subscriber, **extra})


def outbox(h: Harness) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = h.http.get("/v1/outbox").json()["messages"]
    return messages


def message_of(h: Harness, automation: str, to: str) -> dict[str, Any]:
    return next(m for m in outbox(h) if m["automation"] == automation and m["to"] == to)


def test_cursors_round_trip_and_refuse_forgeries() -> None:
    assert after_cursor(cursor_of(41)) == 41
    assert "41" not in cursor_of(41)  # opaque: not the id in clear
    for forged in ("", "!!", cursor_of(1)[:-2], "eyJhZnRlciI6LTF9"):
        with pytest.raises(RequestError):
            after_cursor(forged)


# The api trigger sees what came before it (read your writes) ----------------------------


def test_trigger_right_after_the_event_that_created_the_subscriber(app: Harness) -> None:
    # No engine round runs between the two requests: the trigger processes the event first.
    assert app.post_event("signup", "new@shop.test").status_code == 202
    answer = trigger(app, "New@Shop.test", data={"tier": "gold"})
    assert answer.status_code == 202
    assert answer.json()["accepted"] is True
    app.drain()
    assert message_of(app, "vip", "new@shop.test")["subject"] == "VIP gold"
    assert message_of(app, "welcome", "new@shop.test")["subject"] == "Welcome friend"


def test_trigger_sees_an_unsubscribe_posted_just_before(app: Harness) -> None:
    app.post_event("signup", "ann@shop.test")
    app.drain()
    app.post_event("subscriber.unsubscribed", "ann@shop.test")
    assert trigger(app, "ann@shop.test").json() == {"accepted": False, "reason": "suppressed"}


def test_trigger_with_a_subscriber_object_upserts_first(app: Harness) -> None:
    person = {"email": " Bea@Shop.test ", "fields": {"name": "Bea"}, "groups": ["vip"]}
    answer = trigger(app, person, id="order-1", data={"tier": "gold"})
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    app.drain()
    # Created by the trigger: subscriber.added fired (welcome); joining at creation did not.
    assert message_of(app, "welcome", "bea@shop.test")["subject"] == "Welcome Bea"
    assert message_of(app, "vip", "bea@shop.test")["text"] == "Hello Bea"
    assert [m["automation"] for m in outbox(app)].count("joined") == 0
    shown = app.http.get("/v1/subscribers/bea@shop.test").json()
    assert (shown["fields"], shown["groups"]) == ({"name": "Bea"}, ["vip"])
    # The same call again is a duplicate: nothing upserted or triggered twice.
    again = trigger(app, person, id="order-1", data={"tier": "gold"})
    assert again.json()["duplicate"] is True
    # The same id with another subscriber is a conflict.
    other = trigger(app, {"email": "bea@shop.test", "fields": {"name": "B"}}, id="order-1")
    assert other.status_code == 409 and other.json()["field"] == "id"
    # An existing subscriber is updated like any event (derived events fire).
    trigger(app, {"email": "ann@shop.test"})
    trigger(app, {"email": "ann@shop.test", "groups": ["vip"], "fields": {"name": "Ann"}})
    app.drain()
    assert message_of(app, "joined", "ann@shop.test")["subject"] == "Welcome to VIP"


def test_trigger_with_a_plain_email_still_refuses_strangers(app: Harness) -> None:
    answer = trigger(app, "nobody@shop.test")
    assert (answer.status_code, answer.json()["reason"]) == (200, "not_a_subscriber")
    assert app.http.get("/v1/subscribers/nobody@shop.test").status_code == 404
    bad = trigger(app, {"email": "not-an-address"})
    assert bad.status_code == 422 and bad.json()["field"].startswith("subscriber")


def test_trigger_answers_503_when_processing_cannot_catch_up_in_time(app: Harness) -> None:
    assert app.worker is not None
    app.worker.catch_up_seconds = 0.0  # one batch, then the time is up
    events = [
        {"id": f"b{n}", "type": "signup", "subscriber": {"email": f"p{n}@shop.test"}}
        for n in range(450)
    ]
    assert app.http.post("/v1/events", json={"events": events}).status_code == 202
    late = trigger(app, "p449@shop.test")
    assert late.status_code == 503
    assert late.headers["retry-after"] == "1"
    assert late.json()["error"] == "not_caught_up"
    app.worker.catch_up_seconds = 10.0
    assert trigger(app, "p449@shop.test").json()["accepted"] is True


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Harness, Harness]]:
    if harness.STORE_DATABASES is None:
        pytest.skip("two replicas share one database only on PostgreSQL (make test runs it)")
    write_repo(tmp_path, {"welcome": WELCOME, "vip": VIP})
    with Harness(tmp_path) as first, Harness(tmp_path) as second:
        yield first, second


def hold_engine_lock(url: str) -> psycopg.Connection[Any]:
    """A connection holding the engine lock, as a replica processing events does."""
    holder = psycopg.connect(url)
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (ENGINE_LOCK,))
    return holder


def test_trigger_on_another_replica_waits_for_the_one_processing(
    replicas: tuple[Harness, Harness],
) -> None:
    first, second = replicas
    holder = hold_engine_lock(first.settings.database_url)
    try:
        assert first.post_event("signup", "cid@shop.test").status_code == 202
        release = threading.Timer(0.3, holder.rollback)
        release.start()
        started = time.monotonic()
        answer = trigger(second, "cid@shop.test")
        waited = time.monotonic() - started
        release.join()
    finally:
        holder.close()
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    assert waited >= 0.3  # it waited for the lock holder, not answered not_a_subscriber


def test_trigger_on_another_replica_gives_up_after_its_timeout(
    replicas: tuple[Harness, Harness],
) -> None:
    first, second = replicas
    assert second.worker is not None
    second.worker.catch_up_seconds = 0.2
    holder = hold_engine_lock(first.settings.database_url)
    try:
        first.post_event("signup", "dee@shop.test")
        assert trigger(second, "dee@shop.test").status_code == 503
    finally:
        holder.close()
    assert trigger(second, "dee@shop.test").json()["accepted"] is True


# PUT, GET and the list ----------------------------------------------------------------


def test_put_creates_then_updates_like_an_event(app: Harness) -> None:
    created = app.http.put("/v1/subscribers/Eve%40Shop.test", json={"fields": {"name": "Eve"}})
    assert created.status_code == 201
    assert (created.json()["email"], created.json()["fields"]) == ("eve@shop.test", {"name": "Eve"})
    # Read your writes: the welcome triggered by the derived subscriber.added is pending.
    assert [s["automation"] for s in created.json()["pending"]] == ["welcome"]
    updated = app.http.put(
        "/v1/subscribers/eve@shop.test",
        json={"email": "EVE@shop.test", "fields": {"name": None, "plan": "pro"}, "groups": ["vip"]},
    )
    assert updated.status_code == 200
    assert (updated.json()["fields"], updated.json()["groups"]) == ({"plan": "pro"}, ["vip"])
    app.drain()
    assert message_of(app, "joined", "eve@shop.test")["subject"] == "Welcome to VIP"
    same = app.http.put("/v1/subscribers/eve@shop.test", json={"groups": ["vip"]})
    assert same.status_code == 200 and [s for s in same.json()["pending"]] == []
    bare = app.http.put("/v1/subscribers/fin@shop.test")  # no body: just the address
    assert bare.status_code == 201 and bare.json()["fields"] == {}
    named = app.http.put("/v1/subscribers/gil@shop.test", json={"email": None, "fields": {}})
    assert named.status_code == 201 and named.json()["email"] == "gil@shop.test"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/subscribers/eve@shop.test", {"email": "other@shop.test"}, "email"),
        ("/v1/subscribers/not-an-address", {}, "email"),
        ("/v1/subscribers/a%0Ab@shop.test", {}, "email"),  # a line break: no router 404
        ("/v1/subscribers/%0D%0A", {}, "email"),
        ("/v1/subscribers/eve@shop.test", {"fields": "x"}, "fields"),
        ("/v1/subscribers/eve@shop.test", {"unknown": 1}, "unknown"),
        ("/v1/subscribers/eve@shop.test", [], "(body)"),
    ],
)
def test_put_refuses_bad_bodies_naming_the_field(
    app: Harness, path: str, body: object, field: str
) -> None:
    answer = app.http.put(path, json=body)
    assert answer.status_code == 422
    assert answer.json()["field"] == field


@pytest.mark.parametrize(
    "path",
    [
        "/v1/subscribers/ann+news@shop.test",
        "/v1/subscribers/ann%2Bnews%40shop.test",
        "/v1/subscribers/%20ANN+News@Shop.Test%20",
    ],
)
def test_the_address_in_the_path(app: Harness, path: str) -> None:
    app.post_event("signup", "ann+news@shop.test")
    shown = app.http.get(path)
    assert shown.status_code == 200
    assert shown.json()["email"] == "ann+news@shop.test"


def test_an_encoded_slash_is_part_of_the_address(app: Harness) -> None:
    app.http.put("/v1/subscribers/a%2Fb@shop.test", json={})
    assert app.http.get("/v1/subscribers/a%2Fb@shop.test").json()["email"] == "a/b@shop.test"


def test_show_has_sends_messages_and_provider_events(app: Harness) -> None:
    app.post_event("signup", "fay@shop.test", subscriber={"fields": {"name": "Fay"}})
    app.drain()
    welcome = message_of(app, "welcome", "fay@shop.test")
    opened = {"id": "o1", "type": "opened", "message_id": welcome["id"]}
    assert app.http.post(WEBHOOK, json=opened).status_code == 202
    shown = app.http.get("/v1/subscribers/fay@shop.test").json()
    assert shown["fields"] == {"name": "Fay"} and shown["suppression"] is None
    assert [s["automation"] for s in shown["pending"]] == ["reminder"]
    [message] = shown["messages"]
    assert (message["id"], message["subject"]) == (welcome["id"], "Welcome Fay")
    assert [e["type"] for e in message["events"]] == ["opened"]
    limited = app.http.get("/v1/subscribers/fay@shop.test?messages=0").json()
    assert limited["messages"] == []
    assert app.http.get("/v1/subscribers/fay@shop.test?messages=x").status_code == 422


def test_list_pages_with_a_stable_cursor_and_filters(app: Harness) -> None:
    for n in range(5):
        groups = ["vip"] if n % 2 == 0 else []
        app.post_event("signup", f"p{n}@shop.test", subscriber={"groups": groups})
    app.drain()
    first = app.http.get("/v1/subscribers?limit=2").json()
    assert [p["email"] for p in first["subscribers"]] == ["p0@shop.test", "p1@shop.test"]
    app.post_event("signup", "late@shop.test")  # joins the end, never shifts a page
    second = app.http.get(f"/v1/subscribers?limit=2&cursor={first['next_cursor']}").json()
    assert [p["email"] for p in second["subscribers"]] == ["p2@shop.test", "p3@shop.test"]
    third = app.http.get(f"/v1/subscribers?limit=2&cursor={second['next_cursor']}").json()
    assert [p["email"] for p in third["subscribers"]] == ["p4@shop.test", "late@shop.test"]
    assert third["next_cursor"] is None
    vip = app.http.get("/v1/subscribers?group=vip").json()["subscribers"]
    assert [p["email"] for p in vip] == ["p0@shop.test", "p2@shop.test", "p4@shop.test"]
    bounced_id = message_of(app, "welcome", "p1@shop.test")["id"]
    app.http.post(WEBHOOK, json={"id": "b1", "type": "bounced", "message_id": bounced_id})
    app.post_event("subscriber.unsubscribed", "p3@shop.test")

    def emails(query: str) -> list[str]:
        answer = app.http.get(f"/v1/subscribers?{query}")
        assert answer.status_code == 200, answer.text
        return [p["email"] for p in answer.json()["subscribers"]]

    assert emails("suppressed=true") == ["p1@shop.test", "p3@shop.test"]
    assert emails("suppressed=bounced") == ["p1@shop.test"]
    assert emails("suppressed=false&group=vip") == ["p0@shop.test", "p2@shop.test", "p4@shop.test"]
    for bad in ("cursor=nope", "cursor=eyJ2IjoxfQ", "limit=0", "suppressed=%3F"):
        answer = app.http.get(f"/v1/subscribers?{bad}")
        assert answer.status_code == 422, bad
        assert answer.json()["field"] == bad.split("=")[0]


# Suppression: source, lifting -------------------------------------------------------


def test_a_hard_bounce_is_shown_with_its_source_and_lifted_with_who_and_why(app: Harness) -> None:
    app.post_event("signup", "gus@shop.test")
    app.drain()
    welcome = message_of(app, "welcome", "gus@shop.test")
    bounce = {"id": "bounce-7", "type": "bounced", "bounce": "hard", "message_id": welcome["id"]}
    app.http.post(WEBHOOK, json=bounce)
    suppression = app.http.get("/v1/subscribers/gus@shop.test").json()["suppression"]
    assert suppression["reason"] == "bounced"
    assert suppression["at"] == "2026-03-02T09:00:00Z"
    assert suppression["source"] == {
        "kind": "provider_webhook",
        "provider": "default",
        "event_type": "bounced",
        "event_id": "bounce-7",
        "message_id": welcome["id"],
    }
    assert trigger(app, "gus@shop.test").json()["reason"] == "suppressed"
    lifted = app.http.post(
        "/v1/subscribers/gus@shop.test/unsuppress",
        json={"by": "support (ticket 12)", "note": "mailbox fixed"},
    )
    assert lifted.status_code == 200
    body = lifted.json()
    assert body["lifted"]["reason"] == "bounced" and body["lifted"]["by"] == "support (ticket 12)"
    assert body["subscriber"]["suppression"] is None
    [record] = body["subscriber"]["lifted_suppressions"]
    assert (record["note"], record["source"]["event_id"]) == ("mailbox fixed", "bounce-7")
    assert trigger(app, "gus@shop.test").json()["accepted"] is True
    again = app.http.post("/v1/subscribers/gus@shop.test/unsuppress")
    assert again.status_code == 200 and again.json()["lifted"] is None


def test_an_unsubscribe_is_lifted_only_by_a_resubscribe(app: Harness) -> None:
    app.post_event("signup", "hal@shop.test")
    app.post_event("subscriber.unsubscribed", "hal@shop.test", event_id="unsub-1")
    shown = app.http.get("/v1/subscribers/hal@shop.test").json()["suppression"]
    assert shown["source"]["kind"] == "event" and shown["source"]["event_id"] == "unsub-1"
    refused = app.http.post("/v1/subscribers/hal@shop.test/unsuppress", json={"by": "me"})
    assert refused.status_code == 409 and refused.json()["error"] == "unsubscribed"
    app.post_event("subscriber.resubscribed", "hal@shop.test")
    assert app.http.get("/v1/subscribers/hal@shop.test").json()["suppression"] is None


def test_an_unsubscribe_link_is_the_source(app: Harness) -> None:
    app.post_event("signup", "ida@shop.test")
    app.drain()
    welcome = message_of(app, "welcome", "ida@shop.test")
    link = welcome["headers"]["List-Unsubscribe"].strip("<>")
    path = link.split("/u/", 1)[1]
    assert app.http.post(f"/u/{path}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    shown = app.http.get("/v1/subscribers/ida@shop.test").json()["suppression"]
    assert shown["source"] == {"kind": "unsubscribe_link", "message_id": welcome["id"]}


def test_unknown_subscribers_are_404(app: Harness) -> None:
    for method, path in (
        ("GET", "/v1/subscribers/who@shop.test"),
        ("POST", "/v1/subscribers/who@shop.test/unsuppress"),
        ("DELETE", "/v1/subscribers/who@shop.test"),
    ):
        answer = app.http.request(method, path)
        assert answer.status_code == 404, path
        assert answer.json()["error"] == "unknown_subscriber"


def test_every_subscribers_endpoint_needs_the_key(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ=KEYS) as h:
        calls = [
            ("GET", "/v1/subscribers"),
            ("GET", "/v1/subscribers/a@shop.test"),
            ("PUT", "/v1/subscribers/a@shop.test"),
            ("POST", "/v1/subscribers/a@shop.test/unsuppress"),
            ("DELETE", "/v1/subscribers/a@shop.test"),
        ]
        for method, path in calls:
            assert h.http.request(method, path, json={}).status_code == 401, path
        assert h.http.put("/v1/subscribers/a@shop.test", json={}, headers=AUTH).status_code == 201
        assert h.http.get("/v1/subscribers", headers=AUTH).json()["subscribers"][0]["email"] == (
            "a@shop.test"
        )


def test_openapi_lists_the_subscribers_api(app: Harness) -> None:
    paths = app.http.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/subscribers/{email}"]) >= {"get", "put", "delete"}
    assert "post" in paths["/v1/subscribers/{email}/unsuppress"]
    assert "get" in paths["/v1/subscribers"]
