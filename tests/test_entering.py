"""Entering automations and the api trigger's answers, on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.core.records import SendStatus, Subscriber
from runner.engine.entering import EnterResult, api_trigger, enter
from runner.store.base import WriteTx
from tests.test_engine_events import HOUR, T0, Harness

API = {"type": "api"}
EVENT = {"name": "ping", "data": {}, "occurred_at": T0.isoformat()}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def known(h: Harness, email: str = "ann@example.com", **fields: Any) -> Subscriber:
    h.post("signup", email, fields=fields or None)
    h.process()
    found = h.subscriber(email)
    assert found is not None
    return found


def call(
    h: Harness, email: str = "ann@example.com", data: dict[str, Any] | None = None, id: str = "api"
) -> EnterResult:
    catalog = h.catalog()
    now = h.clock.now()
    return h.write(lambda tx: api_trigger(tx, catalog, h.ctx, id, email, data or {}, now))


def test_enter_creates_a_send_due_after_wait(h: Harness) -> None:
    h.apply("a", {"type": "event", "event": "ping"}, wait="1d12h")
    ann = known(h)
    live = h.catalog().by_id["a"]
    result = h.write(lambda tx: enter(tx, h.ctx, live, ann, T0, EVENT))
    assert result.accepted and result.reason is None and result.send_id is not None
    [send] = h.sends("a")
    assert send.id == result.send_id == send.series_id
    assert send.due_at == T0 + 36 * HOUR
    assert (send.repeat_index, send.trigger_event, send.overrides) == (0, EVENT, {})
    entry = h.read(lambda tx: tx.entry("a", ann.id or 0))
    assert entry is not None and entry.first_at == T0 and entry.count == 1


def test_enter_checks_a_given_audience_context(h: Harness) -> None:
    audience = {"field": "subscriber.fields.plan", "op": "eq", "value": "pro"}
    h.apply("d", {"type": "date", "field": "subscriber.fields.birthday"}, audience=audience)
    ann = known(h, plan="free")
    live = h.catalog().by_id["d"]
    context = {"subscriber": {"email": ann.email, "fields": ann.fields, "groups": []}}

    def work(tx: WriteTx) -> EnterResult:
        return enter(tx, h.ctx, live, ann, T0, EVENT, audience_context=context)

    assert h.write(work) == EnterResult(False, "audience")
    assert h.sends("d") == []
    assert h.read(lambda tx: tx.entry("d", ann.id or 0)) is None


def test_api_trigger_accepts_with_data_as_event_and_overrides(h: Harness) -> None:
    h.apply("api", API)
    known(h, name="Gildong")
    result = call(h, " ANN@example.com", {"name": "Dooly", "code": "X1"})
    assert result.accepted and result.reason is None
    [send] = h.sends("api")
    assert send.id == result.send_id
    assert send.trigger_event == {"name": "api", "data": {"name": "Dooly", "code": "X1"}}
    assert send.overrides == {"name": "Dooly", "code": "X1"}
    assert send.due_at == send.trigger_at == T0
    ann = h.subscriber()
    assert ann is not None and ann.fields == {"name": "Gildong"}, "stored fields untouched"


@pytest.mark.parametrize("status", ["draft", "scheduled", "paused", "stopped"])
def test_api_trigger_not_running(h: Harness, status: str) -> None:
    h.apply("api", API, [(T0 - 2 * HOUR, "running"), (T0 - HOUR, status)])
    known(h)
    assert call(h) == EnterResult(False, "not_running")
    assert h.sends("api") == []


def test_api_trigger_not_a_subscriber(h: Harness) -> None:
    h.apply("api", API)
    assert call(h, "nobody@example.com") == EnterResult(False, "not_a_subscriber")
    assert call(h, "not an email") == EnterResult(False, "not_a_subscriber")
    known(h)
    h.post("subscriber.deleted")
    h.process()
    assert call(h) == EnterResult(False, "not_a_subscriber")
    assert h.sends("api") == []


def test_api_trigger_suppressed_counts_as_cancelled(h: Harness) -> None:
    h.apply("api", API)
    known(h)
    h.post("subscriber.unsubscribed")
    h.process()
    result = call(h)
    assert (result.accepted, result.reason) == (False, "suppressed")
    [send] = h.sends("api")
    assert send.id == result.send_id
    assert (send.status, send.reason) == (SendStatus.CANCELLED, "suppressed")


def test_api_trigger_already_entered(h: Harness) -> None:
    h.apply("api", API)
    known(h)
    assert call(h).accepted
    h.at(T0 + 30 * 24 * HOUR)
    assert call(h) == EnterResult(False, "already_entered")
    assert len(h.sends("api")) == 1


def test_api_trigger_cooldown(h: Harness) -> None:
    h.apply("api", API, retrigger={"cooldown": "1h"})
    known(h)
    assert call(h).accepted
    h.finish(h.sends("api")[0])
    h.at(T0 + timedelta(minutes=59))
    assert call(h) == EnterResult(False, "cooldown")
    h.at(T0 + HOUR)
    assert call(h).accepted
    assert len(h.sends("api")) == 2


def test_api_trigger_refuses_other_trigger_types(h: Harness) -> None:
    h.apply("ev", {"type": "event", "event": "ping"})
    known(h)
    with pytest.raises(ValueError, match="api trigger"):
        call(h, id="ev")
    with pytest.raises(ValueError, match="api trigger"):
        call(h, id="missing")


def test_retrigger_without_repeat_leaves_the_earlier_send_alone(h: Harness) -> None:
    h.apply("api", API, retrigger=True, wait="2h")
    known(h)
    first = call(h)
    h.at(T0 + HOUR)
    second = call(h, data={"n": 2})
    assert second.accepted and second.send_id not in (None, first.send_id)
    sends = [(s.id, s.status, s.due_at, s.series_id, s.overrides) for s in h.sends("api")]
    assert sends == [
        (first.send_id, SendStatus.PENDING, T0 + 2 * HOUR, first.send_id, {}),
        (second.send_id, SendStatus.PENDING, T0 + 3 * HOUR, second.send_id, {"n": 2}),
    ]


def test_retrigger_while_the_first_email_of_a_series_is_pending_moves_it(h: Harness) -> None:
    h.apply("api", API, retrigger=True, wait="2h", repeat={"every": "1d", "times": 2})
    known(h)
    first = call(h)
    h.at(T0 + HOUR)
    second = call(h, data={"n": 2})
    assert second.accepted and second.send_id != first.send_id
    sends = {s.id: s for s in h.sends("api")}
    assert first.send_id is not None and second.send_id is not None
    assert (sends[first.send_id].status, sends[first.send_id].reason) == (
        SendStatus.CANCELLED,
        "reanchored",
    )
    moved = sends[second.send_id]
    assert (moved.status, moved.repeat_index, moved.series_id) == (
        SendStatus.PENDING,
        0,
        first.send_id,
    )
    assert moved.due_at == T0 + 3 * HOUR
    assert moved.overrides == {"n": 2}


def test_claimed_send_of_a_series_is_left_alone_by_a_new_trigger(h: Harness) -> None:
    h.apply("api", API, retrigger=True, repeat={"every": "1d", "times": 1})
    known(h)
    first = call(h)
    claimed = h.write(lambda tx: tx.claim_due(T0, 10, T0 + HOUR, "tok"))
    assert [c.id for c in claimed] == [first.send_id]
    h.at(T0 + timedelta(minutes=5))
    again = call(h)
    assert again == EnterResult(True, None, first.send_id)
    assert [s.status for s in h.sends("api")] == [SendStatus.CLAIMED]


def test_window_zone_uses_subscriber_field(h: Harness) -> None:
    window = {"start": "09:00", "end": "10:00", "timezone": "subscriber"}
    h.apply("api", API, send_window=window)
    known(h, timezone="Asia/Seoul")
    h.at(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # 11:00 Seoul: the window has closed
    assert call(h).accepted
    [send] = h.sends("api")
    assert send.due_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
