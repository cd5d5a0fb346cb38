"""The HTTP API end to end: the real app under uvicorn, a SQLite file and a fake clock."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from runner.core.records import SendStatus
from runner.server.app import MAX_BODY
from runner.server.auth import sign
from tests.harness import WELCOME, Harness, write_repo

KEYS = {"POSTWRIGHT_API_KEYS": "key-1", "POSTWRIGHT_PUBLIC_URL": "https://mail.shop.test"}
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
AUTH = {"Authorization": "Bearer key-1"}
JSON = {"content-type": "application/json"}

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
  text: "Hi {{ event.data.plan | default('there') }}"
"""
API = """\
id: vip
status: running
trigger:
  type: api
email:
  from: "Shop <news@shop.test>"
  subject: "VIP {{ subscriber.fields.tier }}"
  text: "Hello"
"""
DRAFT = WELCOME.replace("id: welcome", "id: later").replace("status: running", "status: draft")


def event(event_id: str, email: str = "a@shop.test", kind: str = "signup") -> dict[str, object]:
    return {"id": event_id, "type": kind, "subscriber": {"email": email}}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Harness]:
    write_repo(tmp_path, {"welcome": WELCOME, "reminder": REMINDER, "vip": API, "later": DRAFT})
    with Harness(tmp_path) as harness:
        yield harness


def unprocessed(h: Harness) -> list[str | None]:
    return h.write(lambda tx: [e.id for e in tx.unprocessed_events(100)])


def suppression(h: Harness, email: str) -> str | None:
    subscriber = h.read(lambda tx: tx.subscriber(email))
    assert subscriber is not None
    return subscriber.suppressed


def test_event_reaches_outbox(app: Harness) -> None:
    response = app.post_event("signup", "Ann@Shop.test", subscriber={"fields": {"name": "Ann"}})
    assert response.status_code == 202
    app.drain()
    messages = app.http.get("/v1/outbox").json()["messages"]
    assert [(m["to"], m["subject"], m["automation"]) for m in messages] == [
        ("ann@shop.test", "Welcome Ann", "welcome")
    ]
    assert messages[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_background_worker_delivers_without_drain(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, background=True) as h:
        assert h.post_event("signup", "b@shop.test").status_code == 202
        deadline = time.monotonic() + 5
        messages: list[object] = []
        while not messages and time.monotonic() < deadline:
            messages = h.http.get("/v1/outbox").json()["messages"]
        assert len(messages) == 1


def test_202_only_after_commit(app: Harness) -> None:
    response = app.http.post("/v1/events", json={"events": [event("c1"), event("c2")]})
    assert response.status_code == 202
    assert response.json() == {
        "results": [{"id": "c1", "status": "stored"}, {"id": "c2", "status": "stored"}]
    }
    assert unprocessed(app) == ["c1", "c2"]  # read right after the answer


def test_duplicate_and_conflict(app: Harness) -> None:
    assert app.http.post("/v1/events", json=event("d1")).status_code == 202
    again = app.http.post("/v1/events", json=event("d1"))
    assert again.status_code == 202
    assert again.json()["results"] == [{"id": "d1", "status": "duplicate"}]
    # the same body with other key order and spacing is still a duplicate
    text = json.dumps({"subscriber": {"email": "a@shop.test"}, "type": "signup", "id": "d1"})
    reordered = app.http.post("/v1/events", content=text, headers=JSON)
    assert reordered.json()["results"][0]["status"] == "duplicate"
    conflict = app.http.post("/v1/events", json=event("d1", email="other@shop.test"))
    assert conflict.status_code == 409
    assert conflict.json()["id"] == "d1"
    assert conflict.json()["field"] == "id"
    assert unprocessed(app) == ["d1"]


def test_invalid_event_in_batch_stores_nothing(app: Harness) -> None:
    batch = [event("b0"), event("b1"), event("b2"), {**event("b3"), "subscriber": {"email": "x"}}]
    response = app.http.post("/v1/events", json={"events": batch})
    assert response.status_code == 422
    body = response.json()
    assert (body["error"], body["index"], body["field"]) == (
        "invalid_event",
        3,
        "events[3].subscriber.email",
    )
    assert unprocessed(app) == []
    ok = app.http.post("/v1/events", json={"events": batch[:3]})
    assert [r["status"] for r in ok.json()["results"]] == ["stored"] * 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "signup", "subscriber": {"email": "a@b.co"}}, "id"),
        ({"id": "", "type": "signup", "subscriber": {"email": "a@b.co"}}, "id"),
        ({"id": "x" * 201, "type": "signup", "subscriber": {"email": "a@b.co"}}, "id"),
        ({"id": "e", "type": "Sign Up", "subscriber": {"email": "a@b.co"}}, "type"),
        ({"id": "e", "type": "email.opened", "subscriber": {"email": "a@b.co"}}, "type"),
        ({"id": "e", "type": "signup"}, "subscriber"),
        ({"id": "e", "type": "group.joined", "subscriber": {"email": "a@b.co"}}, "data.group"),
        (
            {"id": "e", "type": "signup", "subscriber": {"email": "a@b.co"}, "occurred_at": "x"},
            "occurred_at",
        ),
        ({"events": []}, "events"),
        ({"events": [event(f"e{i}") for i in range(1001)]}, "events"),
        ({"events": [event("same"), event("same")]}, "events[1].id"),
    ],
)
def test_422_names_the_field(app: Harness, body: object, field: str) -> None:
    response = app.http.post("/v1/events", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_not_json_is_422(app: Harness) -> None:
    response = app.http.post("/v1/events", content=b"{nope", headers=JSON)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_json"


def test_body_over_5_mib_is_413(app: Harness) -> None:
    big = {**event("big"), "data": {"blob": "x" * MAX_BODY}}
    response = app.http.post("/v1/events", json=big)
    assert response.status_code == 413
    assert unprocessed(app) == []


def test_api_keys_required_when_configured(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ=KEYS) as h:
        assert h.http.post("/v1/events", json=event("k1")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert h.http.post("/v1/events", json=event("k1"), headers=wrong).status_code == 401
        assert h.http.get("/v1/automations").status_code == 401
        assert h.http.get("/v1/outbox").status_code == 401
        assert h.http.post("/v1/events", json=event("k1"), headers=AUTH).status_code == 202
        assert h.http.get("/v1/automations", headers=AUTH).status_code == 200
        assert h.http.get("/healthz").status_code == 200


def test_standard_webhooks_signature_on_events(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME}, config="event_webhook_secrets_env: HOOKS\n")
    with Harness(tmp_path, environ={**KEYS, "HOOKS": SECRET}) as h:
        body = json.dumps(event("s1")).encode()

        def post(stamp: int, signature: str, content: bytes = body) -> int:
            headers = {
                "webhook-id": "msg_1",
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature,
                "content-type": "application/json",
            }
            return h.http.post("/v1/events", content=content, headers=headers).status_code

        now = int(h.clock.now().timestamp())
        for late in (now - 301, now + 301):
            assert post(late, sign(SECRET, "msg_1", late, body)) == 401
        mutated = body.replace(b"s1", b"s2")
        assert post(now, sign(SECRET, "msg_1", now, body), mutated) == 401
        assert unprocessed(h) == []
        assert post(now, sign(SECRET, "msg_1", now, body)) == 202
        assert unprocessed(h) == ["s1"]


def test_api_trigger(app: Harness) -> None:
    url = "/v1/automations/vip/trigger"
    first = app.http.post(url, json={"subscriber": "v@shop.test", "data": {"tier": "gold"}})
    assert (first.status_code, first.json()) == (
        200,
        {"accepted": False, "reason": "not_a_subscriber"},
    )
    app.post_event("signup", "v@shop.test")
    app.drain()
    body = {"id": "t1", "subscriber": "V@shop.test", "data": {"tier": "gold"}}
    accepted = app.http.post(url, json=body)
    assert accepted.status_code == 202
    send_id = accepted.json()["pending_send_id"]
    assert accepted.json()["accepted"] is True
    repeat = app.http.post(url, json=body)
    assert repeat.json() == {"accepted": True, "pending_send_id": send_id, "duplicate": True}
    changed = app.http.post(url, json={**body, "data": {"tier": "silver"}})
    assert changed.status_code == 409
    again = app.http.post(url, json={"subscriber": "v@shop.test"})
    assert again.json() == {"accepted": False, "reason": "already_entered"}
    app.drain()
    subjects = [m["subject"] for m in app.http.get("/v1/outbox").json()["messages"]]
    assert "VIP gold" in subjects
    assert app.http.post("/v1/automations/nope/trigger", json=body).status_code == 404
    not_api = app.http.post("/v1/automations/welcome/trigger", json=body)
    assert (not_api.status_code, not_api.json()["error"]) == (409, "trigger_not_api")
    assert app.http.post(url, json={"data": {}}).json()["field"] == "subscriber"


def test_pending_send_now_and_remove(app: Harness) -> None:
    app.post_event("signup", "p1@shop.test")
    app.post_event("signup", "p2@shop.test")
    app.drain()
    listed = app.http.get("/v1/automations/reminder/pending").json()["pending"]
    assert sorted(s["email"] for s in listed) == ["p1@shop.test", "p2@shop.test"]
    first, second = sorted(listed, key=lambda s: s["email"])
    now = app.http.post(f"/v1/automations/reminder/pending/{first['id']}/send-now")
    assert now.status_code == 200
    removed = app.http.delete(f"/v1/automations/reminder/pending/{second['id']}")
    assert (removed.json()["status"], removed.json()["reason"]) == ("cancelled", "removed")
    again = app.http.post(f"/v1/automations/reminder/pending/{second['id']}/remove")
    assert again.status_code == 409
    assert app.http.delete("/v1/automations/reminder/pending/nope").status_code == 404
    app.drain()
    sent = [
        m["to"]
        for m in app.http.get("/v1/outbox").json()["messages"]
        if m["automation"] == "reminder"
    ]
    assert sent == ["p1@shop.test"]
    history = app.http.get("/v1/automations/reminder").json()["history"]
    pending = [(e["value"], e["detail"]) for e in history if e["kind"] == "pending"]
    assert pending == [("send_now", first["id"]), ("removed", second["id"])]
    assert app.http.get("/v1/automations/reminder/pending").json()["pending"] == []
    bad = app.http.get("/v1/automations/reminder/pending?status=bogus")
    assert bad.json()["field"] == "status"


def test_automations_and_stats(app: Harness) -> None:
    listed = {a["id"]: a for a in app.http.get("/v1/automations").json()["automations"]}
    assert set(listed) == {"welcome", "reminder", "vip", "later"}
    assert listed["later"]["effective_status"] == "draft"
    detail = app.http.get("/v1/automations/welcome").json()
    assert detail["desired_status"] == "running"
    assert detail["last_reload_error"] is None
    assert [e["kind"] for e in detail["history"]] == ["definition", "status"]
    assert app.http.get("/v1/automations/later/stats").json() == {
        "stats": None,
        "reason": "not_started",
    }
    app.post_event("signup", "s@shop.test")
    app.drain()
    stats = app.http.get("/v1/automations/welcome/stats").json()["stats"]
    assert (stats["triggered"], stats["sent"], stats["delivered"]) == (1, 1, 1)
    assert app.http.get("/v1/automations/nope").status_code == 404


def test_provider_webhook_outbox(app: Harness) -> None:
    app.post_event("signup", "w@shop.test")
    app.drain()
    message = app.http.get("/v1/outbox").json()["messages"][0]
    opened = {"id": "pe1", "type": "opened", "message_id": message["id"]}
    url = "/v1/providers/default/webhook"
    assert app.http.post(url, json=opened).json()["results"] == [{"id": "pe1", "status": "stored"}]
    assert app.http.post(url, json=opened).json()["results"][0]["status"] == "duplicate"
    unknown = app.http.post(url, json={**opened, "id": "pe2", "message_id": "nope"})
    assert (unknown.status_code, unknown.json()["field"]) == (422, "message_id")
    wrong = app.http.post(url, json={**opened, "type": "read"})
    assert (wrong.status_code, wrong.json()["field"]) == (422, "type")
    assert app.http.post("/v1/providers/other/webhook", json=opened).status_code == 404
    app.drain()
    stats = app.http.get("/v1/automations/welcome/stats").json()["stats"]
    assert stats["opened"] == 1


def test_unsubscribe_link(app: Harness) -> None:
    app.post_event("signup", "u@shop.test")
    app.drain()
    header = app.http.get("/v1/outbox").json()["messages"][0]["headers"]["List-Unsubscribe"]
    path = header.strip("<>").split("127.0.0.1:8080", 1)[1]
    page = app.http.get(path)
    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert "set-cookie" not in page.headers
    app.drain()
    assert suppression(app, "u@shop.test") is None  # a GET alone never unsubscribes
    done = app.http.post(path, content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200
    app.drain()
    assert suppression(app, "u@shop.test") == "unsubscribed"
    assert app.http.post("/u/forged", content=b"List-Unsubscribe=One-Click").status_code == 404


def test_health_ready_metrics_openapi(app: Harness) -> None:
    assert app.http.get("/healthz").json() == {"status": "ok"}
    assert app.http.get("/readyz").json()["ready"] is True
    app.post_event("signup", "m@shop.test")
    app.drain()
    text = app.http.get("/metrics").text
    assert "postwright_events_ingested_total 1.0" in text
    assert 'postwright_sends_total{outcome="sent"} 1.0' in text
    assert "postwright_queue_depth 1.0" in text  # the reminder waits a day
    assert "postwright_send_latency_seconds_count 1.0" in text
    document = app.http.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert app.app is not None
    # OpenAPI has no path converters: `{email:path}` is documented as `{email}`.
    routes = {re.sub(r":\w+}", "}", getattr(route, "path", "")) for route in app.app.routes}
    routes = {path for path in routes if not path.startswith("/ui")}  # pages, not the API
    assert len(routes) >= 15
    assert routes <= set(document["paths"])


def test_history_kept_after_clock_moves(app: Harness) -> None:
    app.post_event("signup", "h@shop.test")
    app.drain()
    app.advance(timedelta(days=1, seconds=1))
    app.drain()
    sends = app.read(lambda tx: tx.pending_sends("reminder", [SendStatus.SENT], 10))
    assert [s.email for s in sends] == ["h@shop.test"]


def test_reload_state_fields_and_metrics(app: Harness) -> None:
    detail = app.http.get("/v1/automations/welcome").json()
    applied = detail["applied"]
    assert applied["source"] == detail["source"] == WELCOME
    assert (applied["path"], applied["templates"]) == ("automations/welcome.yaml", {})
    assert applied["revision"] == detail["applied_revision"] == detail["attempted_revision"]
    assert (detail["desired_status"], detail["effective_status"]) == ("running", "running")
    assert (detail["last_error"], detail["deletion_blocked"]) == (None, False)
    listed = {a["id"]: a for a in app.http.get("/v1/automations").json()["automations"]}
    assert "source" not in listed["welcome"]
    assert listed["welcome"]["applied_revision"] == detail["applied_revision"]
    text = app.http.get("/metrics").text
    revision = detail["applied_revision"]
    info = (
        'postwright_automation_info{desired_status="draft",id="later",'
        'revision="{rev}",status="draft"} 1.0'
    )
    later = app.http.get("/v1/automations/later").json()["applied_revision"]
    assert info.replace("{rev}", later) in text
    assert f'id="welcome",revision="{revision}",status="running"}} 1.0' in text
    assert "postwright_config_last_reload_successful 1.0" in text
    assert 'postwright_reloads_total{result="refused_mass_delete"} 0.0' in text
    assert "postwright_reload_errors 0.0" in text


def test_reload_endpoint_needs_a_reloader_and_a_key(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ=KEYS) as h:
        assert h.http.post("/v1/reload").status_code == 401
        answer = h.http.post("/v1/reload", headers=AUTH)
        assert (answer.status_code, answer.json()["error"]) == (503, "reload_unavailable")
        paths = h.http.get("/openapi.json", headers=AUTH).json()["paths"]
        assert "post" in paths["/v1/reload"]
