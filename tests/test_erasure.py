"""Erasure end to end (`DELETE /v1/subscribers/{email}`): the person is deleted, every copy of
the address and of their rendered emails is scrubbed, and every count stays. On SQLite the
database files are searched byte by byte; on PostgreSQL every text column of every table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from runner.engine.erasure import mentions
from runner.store import SQLITE_PREFIX
from tests.harness import WELCOME, Harness, write_repo

NEWS = """\
id: news
status: running
trigger:
  type: event
  event: signup
email:
  from: "Shop <news@shop.test>"
  subject: Our news
  text: "News for {{ subscriber.email }}"
  html: "<p>News for {{ subscriber.email }}</p>"
"""
REMINDER = """\
id: reminder
status: running
trigger:
  type: event
  event: signup
wait: 1d
email:
  from: "Shop <news@shop.test>"
  subject: Reminder
  text: "Hi"
"""
VIP = """\
id: vip
status: running
trigger:
  type: api
email:
  from: "Shop <news@shop.test>"
  subject: "VIP {{ subscriber.fields.tier }}"
  text: "Hello {{ subscriber.fields.name }}"
"""
ADDRESS = "ann.erasure@shop.test"
FORMS = (ADDRESS, "ann.erasure%40shop.test")
WEBHOOK = "/v1/providers/default/webhook"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Harness]:
    write_repo(tmp_path, {"welcome": WELCOME, "news": NEWS, "reminder": REMINDER, "vip": VIP})
    with Harness(tmp_path) as h:
        yield h


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("to Ann.Erasure@Shop.TEST today", True),
        ("https://x.test/?u=ann.erasure%40shop.test", True),
        ("https://x.test/?u=ANN.ERASURE%40SHOP.TEST", True),
        ("ann.erasure at shop.test", False),
        ("bob@shop.test", False),
        ("", False),
        (None, False),
    ],
)
def test_mentions_finds_the_address_in_its_usual_spellings(text: str | None, found: bool) -> None:
    assert mentions(text, ADDRESS) is found


def traces(h: Harness, needle: str) -> list[str]:
    """Where `needle` (any case) is stored: SQLite files holding it, or PostgreSQL columns."""
    url = h.settings.database_url
    if url.startswith(SQLITE_PREFIX):
        path = Path(url[len(SQLITE_PREFIX) :])
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        wanted = needle.lower().encode()
        return [f.name for f in files if f.exists() and wanted in f.read_bytes().lower()]
    found: list[str] = []
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
        ).fetchall()
        for table, column in columns:
            query = sql.SQL("SELECT count(*) FROM {} WHERE {} ILIKE %s").format(
                sql.Identifier(table), sql.Identifier(column)
            )
            row = conn.execute(query, (f"%{needle}%",)).fetchone()
            if row is not None and row[0]:
                found.append(f"{table}.{column}")
    return found


def stats(h: Harness, automation: str) -> dict[str, Any]:
    found: dict[str, Any] = h.http.get(f"/v1/automations/{automation}/stats").json()["stats"]
    return found


def person_everywhere(h: Harness) -> dict[str, str]:
    """The address in event ids, fields, data, api data, bodies, links; their message ids."""
    h.post_event(
        "signup",
        ADDRESS,
        event_id=f"signup-{ADDRESS}",
        subscriber={"fields": {"name": "Ann", "backup": ADDRESS}, "groups": ["vip"]},
        data={"ref": ADDRESS},
    )
    answer = h.http.post(
        "/v1/automations/vip/trigger",
        json={"id": f"vip-{ADDRESS}", "subscriber": ADDRESS, "data": {"tier": "gold"}},
    )
    assert answer.json()["accepted"] is True
    h.drain()
    sent = {m["automation"]: m["id"] for m in h.http.get("/v1/outbox").json()["messages"]}
    clicked = {
        "id": "click-1",
        "type": "clicked",
        "message_id": sent["news"],
        "url": f"https://shop.test/c?u={FORMS[1]}",
    }
    assert h.http.post(WEBHOOK, json=clicked).status_code == 202
    h.http.post(WEBHOOK, json={"id": "open-1", "type": "opened", "message_id": sent["welcome"]})
    return sent


def test_erasure_leaves_no_copy_and_keeps_every_count(app: Harness) -> None:
    sent = person_everywhere(app)
    assert traces(app, ADDRESS) and traces(app, FORMS[1])  # the search does find it
    before = {name: stats(app, name) for name in ("welcome", "news", "reminder", "vip")}
    assert before["reminder"]["pending"] == 1

    answer = app.http.delete("/v1/subscribers/Ann.Erasure%40Shop.test")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["erased"] is True and body["subscribers"] == 1
    assert body["scrubbed"]["messages"] == 3 and body["scrubbed"]["sends"] == 4

    # Gone for the API; a second erasure finds nothing.
    assert app.http.get(f"/v1/subscribers/{ADDRESS}").status_code == 404
    assert app.http.delete(f"/v1/subscribers/{ADDRESS}").status_code == 404
    listed = app.http.get("/v1/subscribers").json()["subscribers"]
    assert listed == []

    # Counts kept: sends, deliveries, opens, clicks; the pending reminder cancelled.
    after = {name: stats(app, name) for name in ("welcome", "news", "reminder", "vip")}
    for name in ("welcome", "news", "vip"):
        assert after[name] == before[name], name
    assert after["reminder"]["pending"] == 0
    assert after["reminder"]["cancelled"] == {"deleted_subscriber": 1}
    assert after["reminder"]["triggered"] == before["reminder"]["triggered"]

    # The outbox keeps the messages, scrubbed: no recipient, no bodies, no personal subject.
    messages = {m["automation"]: m for m in app.http.get("/v1/outbox").json()["messages"]}
    assert set(messages) == {"welcome", "news", "vip"}
    for message in messages.values():
        assert message["to"].startswith("deleted:") and message["erased"] is True
        assert message["html"] is None and message["text"] is None
    assert messages["news"]["subject"] == "Our news"  # written in the file: nothing personal
    assert messages["welcome"]["subject"] == "(erased)"
    assert messages["vip"]["subject"] == "(erased)"

    # A late provider event of an erased message still counts, and brings nothing back.
    late = {
        "id": "click-2",
        "type": "clicked",
        "message_id": sent["welcome"],
        "url": f"https://shop.test/c?u={FORMS[1]}",
    }
    assert app.http.post(WEBHOOK, json=late).status_code == 202
    app.drain()
    assert stats(app, "welcome")["clicked"] == 1
    for form in FORMS:
        assert traces(app, form) == [], form


def test_the_same_address_can_sign_up_again_and_be_erased_again(app: Harness) -> None:
    app.post_event("signup", ADDRESS, subscriber={"fields": {"name": "Ann"}})
    app.drain()
    assert app.http.delete(f"/v1/subscribers/{ADDRESS}").status_code == 200
    again = app.http.put(f"/v1/subscribers/{ADDRESS}", json={"fields": {"plan": "pro"}})
    assert again.status_code == 201
    assert again.json()["fields"] == {"plan": "pro"}  # a new person: nothing of the old one
    app.drain()
    assert traces(app, ADDRESS)
    assert app.http.delete(f"/v1/subscribers/{ADDRESS}").status_code == 200
    assert traces(app, ADDRESS) == []


def test_a_subscriber_deleted_by_an_event_can_still_be_erased(app: Harness) -> None:
    app.post_event("signup", ADDRESS)
    app.post_event("subscriber.deleted", ADDRESS)
    app.drain()
    assert app.http.get(f"/v1/subscribers/{ADDRESS}").status_code == 404
    assert traces(app, ADDRESS)  # deleted, not yet erased: events and messages keep it
    assert app.http.delete(f"/v1/subscribers/{ADDRESS}").status_code == 200
    assert traces(app, ADDRESS) == []


def test_other_subscribers_keep_everything(app: Harness) -> None:
    app.post_event("signup", ADDRESS)
    app.post_event("signup", "bob@shop.test", subscriber={"fields": {"name": "Bob"}})
    app.drain()
    app.http.delete(f"/v1/subscribers/{ADDRESS}")
    bob = app.http.get("/v1/subscribers/bob@shop.test").json()
    assert bob["fields"] == {"name": "Bob"} and len(bob["messages"]) == 2
    kept = [m for m in app.http.get("/v1/outbox").json()["messages"] if m["to"] == "bob@shop.test"]
    assert {m["subject"] for m in kept} == {"Welcome Bob", "Our news"}
    assert all(m["text"] for m in kept)
