"""The HTTP edge over real HTTP: browser checks without API keys, JSON content types, hostile
JSON bodies on every JSON endpoint, load shedding and the outbox webhook's batch bound."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.core.records import SendStatus
from tests.harness import TIMEOUT, WELCOME, Harness, write_repo

JSON = {"content-type": "application/json"}
KEYS = {"POSTWRIGHT_API_KEYS": "key-1", "POSTWRIGHT_PUBLIC_URL": "https://mail.shop.test"}
AUTH = {"Authorization": "Bearer key-1"}
API = WELCOME.replace("id: welcome", "id: vip").replace(
    "  type: event\n  event: subscriber.added\n", "  type: api\n"
)
POSTMARK = """\
providers:
  default:
    type: outbox
  pm:
    type: postmark
    server_token_env: PM_TOKEN
    webhook_username_env: PM_USER
    webhook_password_env: PM_PASSWORD
    base_url: http://127.0.0.1:9
"""
POSTMARK_ENV = {"PM_TOKEN": "t", "PM_USER": "u", "PM_PASSWORD": "p"}


def event(event_id: str, email: str = "a@shop.test") -> dict[str, object]:
    return {"id": event_id, "type": "signup", "subscriber": {"email": email}}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Harness]:
    write_repo(tmp_path, {"welcome": WELCOME, "vip": API}, config=POSTMARK)
    with Harness(tmp_path, environ=POSTMARK_ENV) as harness:
        yield harness


def stored(h: Harness) -> list[str | None]:
    """Ids of the events received so far (none processed: the harness runs no worker)."""
    return h.write(lambda tx: [e.id for e in tx.unprocessed_events(1000)])


def test_foreign_host_is_refused_without_api_keys(app: Harness) -> None:
    rebound = app.http.get("/v1/outbox", headers={"Host": "evil.example:8080"})
    assert rebound.status_code == 400
    body = rebound.json()
    assert (body["error"], body["field"]) == ("host_not_allowed", "Host")
    assert "evil.example" in body["message"] and "allowed_hosts" in body["message"]
    posted = app.http.post("/v1/events", json=event("h1"), headers={"Host": "evil.example"})
    assert posted.status_code == 400
    assert stored(app) == []
    for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "app.localhost", "127.0.0.2"):
        assert app.http.get("/v1/outbox", headers={"Host": host}).status_code == 200, host
    # probes may come with the pod's address
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert app.http.get(probe, headers={"Host": "10.1.2.3:8080"}).status_code == 200
    # the gate remembers verdicts per Host header: asked again, and past its bound, the same
    for round_ in range(2):
        for n in range(300):
            host = f"h{n}.example" if n % 2 else f"{n}.app.localhost"
            status = app.http.get("/v1/outbox", headers={"Host": host}).status_code
            assert status == (400 if n % 2 else 200), (round_, host)


def test_configured_hosts_and_public_url_are_served(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    environ = {
        "POSTWRIGHT_ALLOWED_HOSTS": "postwright.internal, Tunnel.Example",
        "POSTWRIGHT_PUBLIC_URL": "http://mail.shop.test:8080",
    }
    with Harness(tmp_path, environ=environ) as h:
        for host in ("postwright.internal", "tunnel.example:443", "mail.shop.test:8080"):
            assert h.http.get("/v1/outbox", headers={"Host": host}).status_code == 200, host
        assert h.http.get("/v1/outbox", headers={"Host": "other.example"}).status_code == 400


def test_cross_origin_writes_are_refused_without_api_keys(app: Harness) -> None:
    evil = {**JSON, "Origin": "http://evil.example"}
    refused = app.http.post("/v1/events", json=event("o1"), headers=evil)
    assert refused.status_code == 403
    assert (refused.json()["error"], refused.json()["field"]) == ("origin_not_allowed", "Origin")
    for origin in ("null", "http://127.0.0.1.evil.example", "file://"):
        headers = {**JSON, "Origin": origin}
        assert app.http.post("/v1/events", json=event("o2"), headers=headers).status_code == 403
    assert stored(app) == []
    assert app.http.post("/v1/reload", headers=evil).status_code == 403
    # reading is not a write: a foreign page cannot read the answer anyway (no CORS)
    assert app.http.get("/v1/outbox", headers=evil).status_code == 200
    for origin in (f"http://127.0.0.1:{app.port}", "http://localhost:3000"):
        headers = {**JSON, "Origin": origin}
        posted = app.http.post("/v1/events", json=event(f"ok-{origin}"), headers=headers)
        assert posted.status_code == 202, origin


def test_a_text_plain_post_from_a_page_is_refused(app: Harness) -> None:
    # What a <form enctype="text/plain"> or a no-cors fetch sends: no preflight.
    body = json.dumps(event("csrf")).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        refused = app.http.post("/v1/events", content=body, headers=headers)
        assert refused.status_code == 415, content_type
        assert refused.json()["error"] == "unsupported_media_type"
        assert "application/json" in refused.json()["message"]
    trigger = app.http.post("/v1/automations/vip/trigger", content=b"{}", headers={})
    assert trigger.status_code == 415
    assert stored(app) == []
    charset = {"content-type": "application/json; charset=utf-8"}
    assert app.http.post("/v1/events", content=body, headers=charset).status_code == 202


def test_unsubscribe_and_webhooks_keep_their_content_types(app: Harness) -> None:
    app.post_event("signup", "u@shop.test")
    app.drain()
    message = app.http.get("/v1/outbox").json()["messages"][0]
    path = "/u/" + message["headers"]["List-Unsubscribe"].strip("<>").split("/u/", 1)[1]
    # A mail client's RFC 8058 one-click POST: form-encoded, from wherever it runs.
    one_click = {
        "content-type": "application/x-www-form-urlencoded",
        "Origin": "https://mail.example",
    }
    done = app.http.post(path, content=b"List-Unsubscribe=One-Click", headers=one_click)
    assert done.status_code == 200
    # A form-encoded webhook passes the gate (the provider decides what it reads) ...
    form = {"content-type": "application/x-www-form-urlencoded"}
    hook = app.http.post("/v1/providers/pm/webhook", content=b"a=b", headers=form)
    assert hook.status_code != 415
    # ... text is refused anywhere under /v1
    text = {"content-type": "text/plain"}
    assert app.http.post("/v1/providers/pm/webhook", content=b"{}", headers=text).status_code == 415


def test_with_api_keys_the_host_is_not_checked(tmp_path: Path) -> None:
    # Behind a proxy or in a cluster any Host may arrive, and a browser cannot send the key.
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ=KEYS) as h:
        headers = {**AUTH, "Host": "postwright.prod.internal", "Origin": "https://admin.example"}
        assert h.http.get("/v1/outbox", headers=headers).status_code == 200
        assert h.http.post("/v1/events", json=event("k1"), headers=headers).status_code == 202
        text = {**AUTH, "content-type": "text/plain"}
        assert h.http.post("/v1/events", content=b"{}", headers=text).status_code == 415


A = b'"type":"signup","subscriber":{"email":"a@shop.test"'  # a valid event's middle part
HOSTILE = [
    # (raw body of one event, the field the 422 names)
    (b'{"id":"n1","type":"signup","subscriber":{"email":"a\\u0000@shop.test"}}',
     "subscriber.email"),
    (b'{"id":"n\\u00002",' + A + b"}}", "id"),
    (b'{"id":"s1",' + A + b',"fields":{"n":"\\ud800"}}}', "subscriber.fields.n"),
    (b'{"id":"s2",' + A + b'},"data":{"\\udfff":1}}', "data.\\udfff"),
    (b'{"id":"f1",' + A + b'},"data":{"x":NaN}}', "data.x"),
    (b'{"id":"f2",' + A + b'},"data":{"x":[-Infinity]}}', "data.x[0]"),
    (b'{"id":"f3",' + A + b'},"data":{"x":1e400}}', "data.x"),
    (b'{"id":"d1","id":"d2",' + A + b"}}", "id"),
    (b'{"id":"d3",' + A + b',"fields":{"k":1,"k":1}}}', "subscriber.fields.k"),
    (b'{"id":"e1","type":"signup","subscriber":{"email":"a@shop.test>"}}', "subscriber.email"),
    (b'{"id":"e2","type":"signup","subscriber":{"email":"<a@shop.test"}}', "subscriber.email"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "field"), HOSTILE)
def test_hostile_event_is_422_naming_the_field(app: Harness, raw: bytes, field: str) -> None:
    response = app.http.post("/v1/events", content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    batch = b'{"events":[' + json.dumps(event("fine")).encode() + b"," + raw + b"]}"
    in_batch = app.http.post("/v1/events", content=batch, headers=JSON)
    assert in_batch.status_code == 422
    assert in_batch.json()["field"] == f"events[1].{field}"
    assert stored(app) == []


def test_deep_nesting_is_422(app: Harness) -> None:
    deep = b'{"id":"deep","type":"signup","subscriber":{"email":"a@shop.test"},"data":{"x":'
    for depth in (70, 990, 100_000):
        raw = deep + b"[" * depth + b"]" * depth + b"}}"
        response = app.http.post("/v1/events", content=raw, headers=JSON)
        assert response.status_code == 422, depth
        # Deeper than the parser goes (about 3,000) only the body can be named.
        expected = "data.x" + "[0]" * 62 if depth < 3000 else "(body)"
        assert response.json()["field"] == expected
        assert "nested deeper than 64 levels" in response.json()["message"]
    assert stored(app) == []


@pytest.mark.parametrize(
    ("path", "raw", "field"),
    [
        ("/v1/automations/vip/trigger", b'{"subscriber":"a@shop.test","data":{"x":NaN}}', "data.x"),
        ("/v1/automations/vip/trigger", b'{"subscriber":"a\\u0000@shop.test"}', "subscriber"),
        ("/v1/automations/vip/trigger", b'{"subscriber":"a@shop.test","subscriber":"b"}',
         "subscriber"),
        ("/v1/providers/default/webhook", b'{"id":"\\ud800","type":"opened","message_id":"m"}',
         "id"),
        ("/v1/providers/default/webhook", b'[{"id":"x","id":"y"}]', "[0].id"),
        ("/v1/providers/pm/webhook", b'{"RecordType":"Open","MessageID":"a\\u0000"}',
         "MessageID"),
        ("/v1/providers/pm/webhook", b'{"Metadata":{"x":Infinity}}', "Metadata.x"),
    ],
)  # fmt: skip
def test_hostile_json_on_other_endpoints(app: Harness, path: str, raw: bytes, field: str) -> None:
    response = app.http.post(path, content=raw, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert app.read(lambda tx: tx.pending_sends("vip", list(SendStatus), 10)) == []


def test_nul_in_the_url_is_422(app: Harness) -> None:
    for method, path in [
        ("POST", "/v1/automations/vip/pending/%00/send-now"),
        ("DELETE", "/v1/automations/vip/pending/a%00b"),
        ("GET", "/v1/outbox?automation=%00"),
        ("GET", "/v1/automations/%00"),
    ]:
        response = app.http.request(method, path)
        assert response.status_code == 422, path
        assert response.json()["error"] == "invalid_request"


def test_bodies_the_endpoint_ignores_never_500(app: Harness) -> None:
    hostile = b'{"a":NaN,"a":"\\ud800","b":"\\u0000"}'
    for path in ("/pending/nope/send-now", "/pending/nope/remove"):
        response = app.http.post(f"/v1/automations/vip{path}", content=hostile, headers=JSON)
        assert response.status_code == 404, path
    reload = app.http.post("/v1/reload", content=hostile, headers=JSON)
    assert reload.json()["error"] == "reload_unavailable"  # the harness has no reloader


def test_outbox_webhook_batch_over_1000_is_refused_whole(app: Harness) -> None:
    app.post_event("signup", "w@shop.test")
    app.drain()
    message_id = app.http.get("/v1/outbox").json()["messages"][0]["id"]
    items = [{"id": f"pe{i}", "type": "opened", "message_id": message_id} for i in range(1500)]
    url = "/v1/providers/default/webhook"
    refused = app.http.post(url, json=items)
    assert refused.status_code == 422
    assert (refused.json()["error"], refused.json()["field"]) == ("invalid_batch", "(body)")
    assert "1000" in refused.json()["message"]
    assert app.read(lambda tx: tx.message_events(message_id)) == []
    accepted = app.http.post(url, json=items[:1000])
    assert accepted.status_code == 202
    assert len(app.read(lambda tx: tx.message_events(message_id))) == 1000


def test_backlog_bound_sheds_with_retry_after(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ={"POSTWRIGHT_HTTP_MAX_BACKLOG": "3"}) as h:
        acknowledged: list[str] = []
        answers = []
        for n in range(6):
            response = h.http.post("/v1/events", json=event(f"b{n}", f"b{n}@shop.test"))
            answers.append(response.status_code)
            if response.status_code == 202:
                acknowledged.append(f"b{n}")
            else:
                assert response.headers["retry-after"] == "1"
                assert (response.json()["error"], response.json()["reason"]) == (
                    "overloaded",
                    "backlog",
                )
        assert answers == [202, 202, 202, 429, 429, 429]
        batch = {"events": [event("c0", "c0@shop.test"), event("c1", "c1@shop.test")]}
        assert h.http.post("/v1/events", json=batch).status_code == 429
        received = stored(h)
        h.drain()  # the engine catches up: the bound is free again
        assert h.http.post("/v1/events", json=batch).status_code == 202
        acknowledged += ["c0", "c1"]
        assert h.http.post("/v1/events", json=event("b9")).status_code == 202  # 2 < 3
        acknowledged.append("b9")
        assert h.http.post("/v1/events", json=event("b10")).status_code == 429
        received += stored(h)
        assert received == acknowledged  # every 202 is kept, and nothing that was refused
        h.drain()
        metrics = h.http.get("/metrics").text
        assert 'postwright_http_requests_refused_total{reason="backlog"} 5.0' in metrics
        assert "postwright_events_backlog 0.0" in metrics


def test_in_flight_bound_sheds_ingestion_only(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ={"POSTWRIGHT_HTTP_MAX_IN_FLIGHT": "1"}) as h:
        body = json.dumps(event("slow")).encode()
        with socket.create_connection(("127.0.0.1", h.port), timeout=TIMEOUT) as slow:
            head = (
                f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            slow.sendall(head.encode() + body[:10])  # in flight, waiting for its body
            wait_until(lambda: h.http.post("/v1/events", json=event("x")).status_code == 429)
            shed = h.http.post("/v1/events", json=event("x"))
            assert shed.json()["reason"] == "in_flight"
            assert shed.headers["retry-after"] == "1"
            assert h.http.get("/healthz").status_code == 200  # only ingestion is shed
            slow.sendall(body[10:])
            assert slow.recv(4096).split(b"\r\n", 1)[0] == b"HTTP/1.1 202 Accepted"
        assert h.http.post("/v1/events", json=event("x")).status_code == 202
        assert sorted(str(i) for i in stored(h)) == ["slow", "x"]


def wait_until(check: object, attempts: int = 200) -> None:
    """Retry `check` (a callable returning bool) a bounded number of times."""
    assert callable(check)
    for _ in range(attempts):
        if check():
            return
    raise AssertionError("the condition never held")
