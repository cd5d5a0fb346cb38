"""The write endpoints under random and hostile JSON, over real HTTP (tests/harness.py):
`POST /v1/events`, the outbox provider webhook, the `api` trigger and
`PUT /v1/subscribers/{email}`.

Whatever the body: never a 5xx; a 422 names the field; a refused request stores nothing
(the event log, the message's provider events, the subscriber and the pending sends are as
they were); an accepted one stores what its answer says.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import currently_in_test_context, event, given
from hypothesis import strategies as st

from runner.core.records import SendStatus, Subscriber
from runner.store.base import ReadTx
from tests.harness import WELCOME, Harness, write_repo
from tests.reliability.profiles import examples

pytestmark = pytest.mark.reliability

PING = """\
id: ping
status: running
trigger: {type: api}
retrigger: true
email:
  from: "Shop <news@shop.test>"
  subject: "Ping {{ event.data.n | default('') }}"
  text: "Hello {{ subscriber.email }}"
"""
JSON = {"content-type": "application/json"}
KNOWN = "known@shop.test"  # a subscriber with a sent message, for webhooks and the trigger


@dataclass
class Runner:
    """The harness, the outbox message that webhooks can name, and a request counter."""

    harness: Harness
    message_id: str

    def post(self, path: str, body: bytes, method: str = "POST") -> httpx.Response:
        answer = self.harness.http.request(method, path, content=body, headers=JSON)
        assert answer.status_code < 500, (answer.status_code, answer.text, body[:300])
        if answer.status_code == 422:
            field = answer.json().get("field")
            assert isinstance(field, str) and field, answer.text
        if currently_in_test_context():  # statistics of the answers, per endpoint
            event(f"{path.split('/')[2]}: {answer.status_code}")
        return answer

    def snapshot(self, email: str = KNOWN) -> Stored:
        """Everything a request could have stored."""

        def read(tx: ReadTx) -> Stored:
            return Stored(
                tx.last_event_seq(),
                len(tx.message_events(self.message_id)),
                tx.subscriber(email),
                len(tx.pending_sends("ping", list(SendStatus), limit=10_000)),
            )

        return self.harness.read(read)


@dataclass(frozen=True)
class Stored:
    """What the store holds that a request could change."""

    last_event: int  # the sequence number of the last stored event
    provider_events: int  # of the known message
    subscriber: Subscriber | None  # the address a request names
    ping_sends: int  # sends of the `api` trigger's automation, in any status


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    repo = write_repo(tmp_path_factory.mktemp("fuzz") / "repo", {"welcome": WELCOME, "ping": PING})
    with Harness(repo) as h:
        assert h.post_event("signup", KNOWN, event_id="first").status_code == 202
        h.drain()
        messages = h.read(lambda tx: tx.messages(10))
        assert [m.to for m in messages] == [KNOWN]
        yield Runner(h, messages[0].id)


# --- JSON, fair and hostile -------------------------------------------------------------------


def json_of(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """JSON values whose strings come from `text`."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**40), max_value=10**40)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
        max_leaves=12,
    )


# Any text (NUL included), and text every store keeps (events that should be accepted).
json_values = json_of(st.text(max_size=12))
fair_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
fair_values = json_of(fair_text)
fair_scalars = st.none() | st.booleans() | st.integers() | fair_text
# Mostly fresh ids; short ones repeat across examples (duplicates and 409 conflicts).
ids = st.uuids().map(str) | st.text(string.ascii_letters + "-_:.", min_size=1, max_size=3)
emails = st.sampled_from([KNOWN, "a@shop.test", " MiXeD@Shop.Test ", "b.c+d@shop.test"])
events: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "id": ids,
        "type": st.sampled_from(["purchase", "cart.abandoned", "subscriber.updated", "signup"]),
        "subscriber": st.fixed_dictionaries(
            {"email": emails},
            optional={
                "fields": st.dictionaries(st.sampled_from(["plan", "name", "n"]), fair_scalars),
                "groups": st.lists(st.sampled_from(["vip", "staff"]), unique=True),
            },
        ),
    },
    optional={"data": st.dictionaries(fair_text, fair_values, max_size=3)},
)
# Fields of an event and values that are wrong there (or, for some random ones, right).
EVENT_FIELDS = (
    ("id",),
    ("type",),
    ("subscriber",),
    ("subscriber", "email"),
    ("subscriber", "fields"),
    ("subscriber", "groups"),
    ("data",),
    ("data", "x"),  # free-form: only the strict JSON reader stands here
    ("data", "x", "y"),
    ("subscriber", "fields", "plan"),
    ("occurred_at",),
    ("unknown",),
)
WRONG = st.one_of(
    json_values,
    st.sampled_from(["", "x" * 201, "not an email", "2026-13-45T00:00:00Z", "email.opened", []]),
)


def put(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of `body` with `value` at `path` (creating objects on the way)."""
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        if isinstance(key, str) and not isinstance(target.get(key), dict | list):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    return copy


def hostile_texts(value: str) -> list[str]:
    """JSON texts of `value` (a field's place holding "@@") made hostile, one way each."""
    return [
        value.replace('"@@"', "NaN"),
        value.replace('"@@"', "-Infinity"),
        value.replace('"@@"', "1e400"),
        value.replace('"@@"', "9" * 5000),  # more digits than Python turns into an int
        value.replace('"@@"', '"\\ud800"'),  # a lone surrogate
        value.replace('"@@"', '"a\\u0000b"'),  # NUL
        value.replace('"@@"', '{"k": 1, "k": 2}'),  # a repeated key
        value.replace('"@@"', "[" * 70 + "]" * 70),  # past the nesting limit
        value.replace('"@@"', "[" * 5000 + "]" * 5000),  # deeper than the parser
        value.replace('"@@"', "[" * 100_000 + "]" * 100_000),
        value.replace('"@@"', '{"\\udfff": 1}'),  # a lone surrogate in a key
        value.replace('"@@"', "[1,]"),  # not JSON
    ]


HOSTILE = st.integers(0, len(hostile_texts("")) - 1)
# A corruption of one field: ("wrong", a JSON value) or ("hostile", which hostile text).
CORRUPTIONS = st.tuples(st.just("wrong"), WRONG) | st.tuples(st.just("hostile"), HOSTILE)


def corrupt(body: Any, path: tuple[str | int, ...], corruption: tuple[str, Any]) -> str:
    """The JSON text of `body` with the field at `path` corrupted."""
    how, what = corruption
    if how == "wrong":
        return json.dumps(put(body, path, what))
    return hostile_texts(json.dumps(put(body, path, "@@")))[int(what)]


# --- POST /v1/events ------------------------------------------------------------------------


@examples(quick=40, long=1000)
@given(st.one_of(json_values, events, st.lists(events, max_size=3).map(lambda e: {"events": e})))
def test_events_with_random_bodies(runner: Runner, body: Any) -> None:
    before = runner.snapshot()
    answer = runner.post("/v1/events", json.dumps(body).encode())
    if answer.status_code == 202:
        stored = [r for r in answer.json()["results"] if r["status"] == "stored"]
        assert runner.snapshot().last_event == before.last_event + len(stored)
    else:
        assert runner.snapshot() == before


@examples(quick=60, long=2000)
@given(
    st.lists(events, min_size=1, max_size=4, unique_by=lambda e: e["id"]),
    st.data(),
    st.sampled_from(EVENT_FIELDS),
    CORRUPTIONS,
)
def test_a_batch_with_one_bad_field_is_refused_whole_or_stored_whole(
    runner: Runner,
    batch: list[dict[str, Any]],
    data: st.DataObject,
    field: tuple[str, ...],
    corruption: tuple[str, Any],
) -> None:
    index = data.draw(st.integers(0, len(batch) - 1), label="index")
    text = corrupt({"events": batch}, ("events", index, *field), corruption)
    before = runner.snapshot()
    answer = runner.post("/v1/events", text.encode())
    if corruption[0] == "hostile":
        assert answer.status_code == 422, answer.text
    if answer.status_code == 422 and answer.json()["field"] != "(body)":
        assert answer.json()["field"].startswith(f"events[{index}]"), answer.text
    if answer.status_code != 202:
        assert runner.snapshot() == before
        return
    results = answer.json()["results"]
    assert len(results) == len(batch)
    stored = sum(r["status"] == "stored" for r in results)
    assert runner.snapshot().last_event == before.last_event + stored


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe{}",  # not UTF-8
        b'{"id": "dup", "id": "dup", "type": "purchase", "subscriber": {"email": "a@shop.test"}}',
        b'{"events": [' + b",".join([b"{}"] * 1001) + b"]}",  # over the batch limit
        b'{"events": []}',
        b"[]",
        b"null",
        b'"\\u0000"',
    ],
)
def test_events_with_raw_bodies(runner: Runner, body: bytes) -> None:
    before = runner.snapshot()
    assert runner.post("/v1/events", body).status_code == 422
    assert runner.snapshot() == before


# --- the outbox webhook -----------------------------------------------------------------------


def provider_events(message_id: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": ids,
            "type": st.sampled_from(["delivered", "opened", "clicked", "bounced"]),
            "message_id": st.just(message_id),
        },
        optional={"url": st.just("https://shop.test/sale"), "bounce": st.just("soft")},
    )


@examples(quick=30, long=800)
@given(st.data(), st.sampled_from(["fair", "wrong", "hostile", "unknown message", "random"]))
def test_outbox_webhook_batches(runner: Runner, data: st.DataObject, how: str) -> None:
    webhook = "/v1/providers/default/webhook"
    batch = data.draw(st.lists(provider_events(runner.message_id), min_size=1, max_size=4))
    index = data.draw(st.integers(0, len(batch) - 1))
    field = data.draw(st.sampled_from(["id", "type", "message_id", "url", "bounce", "extra"]))
    if how == "wrong":
        text = corrupt(batch, (index, field), ("wrong", data.draw(WRONG)))
    elif how == "hostile":
        text = corrupt(batch, (index, field), ("hostile", data.draw(HOSTILE)))
    elif how == "unknown message":
        text = json.dumps(put(batch, (index, "message_id"), "no-such-message"))
    elif how == "random":
        text = json.dumps(data.draw(json_values))
    else:
        text = json.dumps(batch)
    before = runner.snapshot()
    answer = runner.post(webhook, text.encode())
    if how in ("hostile", "unknown message"):
        assert answer.status_code == 422, answer.text
    if answer.status_code != 202:
        assert runner.snapshot() == before
        return
    stored = sum(r["status"] == "stored" for r in answer.json()["results"])
    assert runner.snapshot().provider_events == before.provider_events + stored
    assert how != "fair" or len(answer.json()["results"]) == len(batch)


# --- the api trigger and the subscribers API ------------------------------------------------


triggers = st.fixed_dictionaries(
    {"subscriber": st.one_of(emails, st.fixed_dictionaries({"email": emails}))},
    optional={"id": ids, "data": st.dictionaries(st.sampled_from(["n", "plan"]), fair_scalars)},
)
TRIGGER_FIELDS = (
    ("data", "n"),
    ("id",),
    ("subscriber",),
    ("subscriber", "email"),
    ("subscriber", "fields"),
    ("data",),
    ("x",),
)


@examples(quick=30, long=800)
@given(triggers, st.sampled_from(TRIGGER_FIELDS), CORRUPTIONS)
def test_api_trigger(
    runner: Runner, body: dict[str, Any], field: tuple[str, ...], corruption: tuple[str, Any]
) -> None:
    before = runner.snapshot()
    answer = runner.post("/v1/automations/ping/trigger", corrupt(body, field, corruption).encode())
    if corruption[0] == "hostile":
        assert answer.status_code == 422, answer.text
    if answer.status_code >= 400:
        assert runner.snapshot() == before
    runner.harness.drain()  # what the trigger accepted is processed, not left for the next


ADDRESSES = st.one_of(
    emails,
    st.text(max_size=30),
    st.sampled_from(["a%00b@shop.test", "\ud800@shop.test", "x" * 300 + "@shop.test", "a@b", "@"]),
)
PUT_FIELDS = (("fields",), ("groups",), ("email",), ("fields", "plan"), ("x",))


def _watched(address: str) -> str:
    """The stored address a PUT to `address` could change (one the store can look up:
    PostgreSQL text holds neither lone surrogates nor NUL, so those look up a known one)."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return KNOWN
    if "\x00" in address:
        return KNOWN
    return address.strip().lower()


@examples(quick=30, long=800)
@given(
    ADDRESSES,
    st.fixed_dictionaries(
        {}, optional={"fields": st.dictionaries(st.sampled_from(["plan", "n"]), fair_scalars)}
    ),
    st.sampled_from(PUT_FIELDS),
    CORRUPTIONS,
)
def test_put_subscriber(
    runner: Runner,
    address: str,
    body: dict[str, Any],
    field: tuple[str, ...],
    corruption: tuple[str, Any],
) -> None:
    quoted = quote(address.encode("utf-8", "surrogatepass"), safe="@+")
    before = runner.snapshot(_watched(address))
    text = corrupt(body, field, corruption)
    answer = runner.post(f"/v1/subscribers/{quoted}", text.encode(), method="PUT")
    if corruption[0] == "hostile":
        assert answer.status_code == 422, answer.text
    if answer.status_code >= 400:
        assert runner.snapshot(_watched(address)) == before
