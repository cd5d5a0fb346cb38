"""The automation model: normalised values, defaults, and a lossless JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from runner.core import durations
from runner.core.conditions import AllCondition, FieldCondition, NotCondition
from runner.core.config import Config, OutboxProvider
from runner.core.model import (
    Automation,
    Cooldown,
    DateTrigger,
    Day,
    EmailTrigger,
    ScheduleTrigger,
    Status,
    constraint_violations,
)

SCHEMA = Path(__file__).resolve().parent.parent / "schema" / "automation.schema.json"


def automation(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "welcome",
        "status": "draft",
        "trigger": {"type": "event", "event": "subscriber.added"},
        "email": {"from": "Shop <news@shop.example>", "subject": "Hi", "text": "Hello"},
    }
    data.update(overrides)
    return data


def model(**overrides: Any) -> Automation:
    return Automation.model_validate(automation(**overrides))


# --- normalisation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("30s", 30),
        ("15m", 900),
        ("12h", 43_200),
        ("7d", 604_800),
        ("2w", 1_209_600),
        ("1d12h", 129_600),
        ("1w2d3h4m5s", 788_645),
        ("90m", 5_400),
    ],
)
def test_durations_become_seconds(text: str, seconds: int) -> None:
    assert model(wait=text).wait == seconds
    assert durations.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "1", "1.5h", "-1d", "1 d", "12h1d", "1d1d", "1y", "P1D"])
def test_malformed_durations_are_refused(text: str) -> None:
    assert durations.parse_duration(text) is None
    with pytest.raises(ValidationError) as raised:
        model(wait=text)
    assert raised.value.errors()[0]["type"] == "invalid-duration"


def test_non_string_durations_are_refused() -> None:
    for value in (30, 1.5, True, ["1d"]):
        with pytest.raises(ValidationError):
            model(wait=value)


def test_zero_is_not_a_positive_duration() -> None:
    with pytest.raises(ValidationError) as raised:
        model(repeat={"every": "0s", "times": 1})
    assert raised.value.errors()[0]["type"] == "invalid-duration"


@pytest.mark.parametrize("seconds", [0, 1, 59, 60, 3_600, 86_399, 86_400, 129_600, 788_645])
def test_format_duration_is_the_inverse_of_parsing(seconds: int) -> None:
    assert durations.parse_duration(durations.format_duration(seconds)) == seconds


def test_durations_everywhere_are_seconds() -> None:
    m = model(
        trigger={
            "type": "email",
            "action": "not_opened",
            "automation": "intro",
            "within": "3d",
        },
        retrigger={"cooldown": "1h30m"},
        repeat={"every": "1w", "times": 2},
    )
    assert isinstance(m.trigger, EmailTrigger)
    assert m.trigger.within == 259_200
    assert isinstance(m.retrigger, Cooldown) and m.retrigger.cooldown == 5_400
    assert m.repeat is not None and m.repeat.every == 604_800


@pytest.mark.parametrize(
    ("offset", "seconds"), [("-3d", -259_200), ("1w", 604_800), ("+2d", 172_800), (0, 0)]
)
def test_date_offsets_are_signed_whole_days(offset: str | int, seconds: int) -> None:
    m = model(trigger={"type": "date", "field": "subscriber.fields.birthday", "offset": offset})
    assert isinstance(m.trigger, DateTrigger)
    assert m.trigger.offset == seconds


@pytest.mark.parametrize("offset", ["12h", "1d12h", "3", 1, "-"])
def test_date_offsets_in_hours_are_refused(offset: str | int) -> None:
    with pytest.raises(ValidationError):
        model(trigger={"type": "date", "field": "subscriber.fields.birthday", "offset": offset})


def test_days_are_a_sorted_set() -> None:
    m = model(send_window={"days": ["sun", "fri", "mon", "fri"], "start": "9:00", "end": "17:00"})
    assert m.send_window is not None
    assert m.send_window.days == [Day.MON, Day.FRI, Day.SUN]


def test_days_default_to_every_day() -> None:
    m = model(send_window={"start": "09:00", "end": "17:00"})
    assert m.send_window is not None
    assert [d.value for d in m.send_window.days] == [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
    ]


def test_days_may_not_be_empty_or_unknown() -> None:
    for days in ([], ["monday"], ["Mon"]):
        with pytest.raises(ValidationError):
            model(send_window={"days": days, "start": "09:00", "end": "17:00"})


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("9:00", "09:00"),
        ("09:00", "09:00"),
        ("0:05", "00:05"),
        ("23:59", "23:59"),
        ("00:00", "00:00"),
    ],
)
def test_times_become_hh_mm(text: str, normal: str) -> None:
    m = model(send_window={"start": text, "end": "23:00" if normal != "23:00" else "22:00"})
    assert m.send_window is not None
    assert m.send_window.start == normal


@pytest.mark.parametrize("text", ["24:00", "9:60", "9", "9:0", "09:00:00", "9h", "-1:00", " 9:00"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(ValidationError) as raised:
        model(send_window={"start": text, "end": "18:00"})
    assert raised.value.errors()[0]["type"] == "invalid-time"


def test_date_trigger_time_defaults_to_nine() -> None:
    m = model(trigger={"type": "date", "field": "subscriber.fields.birthday"})
    assert isinstance(m.trigger, DateTrigger)
    assert (m.trigger.at, m.trigger.offset, m.trigger.timezone) == ("09:00", 0, None)


@pytest.mark.parametrize(
    "written",
    [
        "2026-12-01T09:00:00+09:00",
        "2026-12-01T00:00:00Z",
        "2026-12-01T00:00:00+00:00",
        "2026-11-30T19:00:00-05:00",
        datetime(2026, 12, 1, 9, tzinfo=timezone(timedelta(hours=9))),
    ],
)
def test_datetimes_become_utc(written: str | datetime) -> None:
    m = model(status="scheduled", start_at=written)
    assert m.start_at == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert m.start_at is not None and m.start_at.utcoffset() == timedelta(0)
    assert m.start_at.tzinfo is UTC


@pytest.mark.parametrize("written", ["2026-12-01T09:00:00", "2026-12-01", datetime(2026, 12, 1)])
def test_naive_datetimes_are_refused(written: str | datetime) -> None:
    with pytest.raises(ValidationError) as raised:
        model(status="scheduled", start_at=written)
    assert raised.value.errors()[0]["type"] in {"timezone_aware", "datetime_from_date_parsing"}


def test_cron_whitespace_is_normalised() -> None:
    m = model(trigger={"type": "schedule", "cron": " 0  9 * *\t1 ", "timezone": "Asia/Seoul"})
    assert isinstance(m.trigger, ScheduleTrigger)
    assert m.trigger.cron == "0 9 * * 1"


def test_equal_meaning_gives_equal_models() -> None:
    a = model(wait="36h", send_window={"days": ["fri", "mon"], "start": "9:00", "end": "18:00"})
    b = model(
        wait="1d12h",
        send_window={"days": ["mon", "fri", "mon"], "start": "09:00", "end": "18:00"},
        retrigger=False,
        provider="default",
        exit_on=[],
    )
    assert a == b


# --- defaults -----------------------------------------------------------------------


def test_defaults() -> None:
    m = model()
    assert m.retrigger is False
    assert m.provider == "default"
    assert m.wait == 0
    assert m.exit_on == []
    assert m.labels == {}
    assert (m.name, m.description, m.start_at, m.stop_at) == (None, None, None, None)
    assert (m.audience, m.send_window, m.repeat) == (None, None, None)
    assert m.email.tags == []
    assert m.status is Status.DRAFT


def test_retrigger_forms() -> None:
    assert model(retrigger=True).retrigger is True
    assert model(retrigger=False).retrigger is False
    cooldown = model(retrigger={"cooldown": "2h"}).retrigger
    assert isinstance(cooldown, Cooldown) and cooldown.cooldown == 7_200


def test_config_defaults() -> None:
    config = Config()
    assert config.timezone == "UTC"
    assert config.providers == {"default": OutboxProvider(type="outbox")}
    assert config.max_emails_per_day == 3
    assert config.event_id_retention == 30 * 86_400


def test_models_are_frozen() -> None:
    m = model()
    with pytest.raises(ValidationError):
        m.wait = 5  # type: ignore[misc]


# --- conditions --------------------------------------------------------------------


def test_nested_conditions_parse_to_their_classes() -> None:
    m = model(
        audience={
            "all": [
                {"field": "subscriber.fields.plan", "op": "ne", "value": "enterprise"},
                {"not": {"in_group": "staff"}},
            ]
        }
    )
    assert isinstance(m.audience, AllCondition)
    first, second = m.audience.all
    assert isinstance(first, FieldCondition) and first.value == "enterprise"
    assert isinstance(second, NotCondition)


@pytest.mark.parametrize(
    "condition",
    [
        {"field": "subscriber.fields.plan", "op": "eq"},
        {"field": "subscriber.fields.plan", "op": "in", "value": "pro"},
        {"field": "subscriber.fields.plan", "op": "exists", "value": "yes"},
        {"field": "plan", "op": "exists"},
        {"all": []},
        {"in_group": ""},
        {},
    ],
)
def test_bad_conditions_are_refused(condition: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model(audience=condition)


# --- cross-field rules outside the loader ---------------------------------------------


def test_constraint_violation_raises_without_the_loader_context() -> None:
    with pytest.raises(ValidationError) as raised:
        model(status="scheduled")
    error = raised.value.errors()[0]
    assert error["type"] == "start-at-required"
    assert error["ctx"] == {"at": "status"}


def test_constraint_violations_lists_every_rule() -> None:
    m = Automation.model_validate(
        automation(
            status="scheduled",
            send_window={"start": "10:00", "end": "10:00"},
            trigger={"type": "schedule", "cron": "0 9 * * 1"},
            retrigger=True,
            repeat={"every": "1d", "times": 1},
        ),
        context={"collect_violations": True},
    )
    assert [(v.rule, v.at) for v in constraint_violations(m)] == [
        ("start-at-required", ("status",)),
        ("retrigger-not-allowed", ("retrigger",)),
        ("repeat-not-allowed", ("repeat",)),
        ("window-empty", ("send_window", "end")),
    ]


# --- JSON round trip -------------------------------------------------------------------


FULL: dict[str, Any] = automation(
    id="coupon-after-open",
    name="Coupon",
    description="free text",
    labels={"team": "growth"},
    status="scheduled",
    start_at="2026-12-01T09:00:00+09:00",
    stop_at="2027-03-01T00:00:00+09:00",
    trigger={
        "type": "email",
        "action": "clicked",
        "automation": "product-intro",
        "link_contains": "/sale",
    },
    audience={
        "any": [
            {"field": "subscriber.fields.score", "op": "gte", "value": 10.5},
            {"field": "subscriber.fields.country", "op": "in", "value": ["KR", "JP"]},
            {"not": {"in_group": "staff"}},
            {"field": "event.data.flag", "op": "exists", "value": False},
        ]
    },
    wait="1d12h",
    exit_on=[{"event": "purchase", "where": {"field": "event.data.total", "op": "gt", "value": 0}}],
    send_window={"days": ["fri", "mon"], "start": "9:00", "end": "1:00", "timezone": "subscriber"},
    retrigger={"cooldown": "1h"},
    repeat={"every": "1w", "times": 4},
    provider="marketing",
    email={
        "from": "Shop <news@shop.example>",
        "reply_to": "help@shop.example",
        "subject": "{{ subscriber.fields.name }}",
        "preheader": "p",
        "html_file": "../templates/coupon.html",
        "text": "plain",
        "tags": ["coupon"],
    },
)


CASES = [
    FULL,
    automation(),
    automation(trigger={"type": "api"}, retrigger=True),
    automation(trigger={"type": "schedule", "cron": "0 9 * * 1", "timezone": "UTC"}),
    automation(
        trigger={
            "type": "date",
            "field": "subscriber.fields.birthday",
            "offset": "-1w",
            "at": "7:30",
            "timezone": "Europe/Berlin",
        }
    ),
    automation(
        trigger={
            "type": "event",
            "event": "group.joined",
            "group": "vip",
            "where": {"in_group": "vip"},
        }
    ),
]
CASE_IDS = ["full", "minimal", "api", "schedule", "date", "event"]


@pytest.mark.parametrize("data", CASES, ids=CASE_IDS)
def test_json_dump_round_trip(data: dict[str, Any]) -> None:
    original = Automation.model_validate(data)
    dumped = original.model_dump(mode="json", by_alias=True)
    again = Automation.model_validate_json(json.dumps(dumped))
    assert again == original
    assert again.model_dump(mode="json", by_alias=True) == dumped


@pytest.mark.parametrize("data", CASES, ids=CASE_IDS)
def test_json_dump_matches_the_schema(data: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    dumped = Automation.model_validate(data).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
    jsonschema.validate(dumped, schema)


def test_json_dump_is_stable_json() -> None:
    original = Automation.model_validate(FULL)
    dumped = original.model_dump(mode="json", by_alias=True)
    assert json.loads(json.dumps(dumped)) == dumped
    assert Automation.model_validate(FULL).model_dump(mode="json", by_alias=True) == dumped


def test_json_dump_uses_the_file_spelling() -> None:
    dumped = Automation.model_validate(FULL).model_dump(mode="json", by_alias=True)
    assert dumped["email"]["from"] == "Shop <news@shop.example>"
    assert "from_" not in dumped["email"]
    assert dumped["audience"]["any"][2] == {"not": {"in_group": "staff"}}
    assert dumped["start_at"] in {"2026-12-01T00:00:00Z", "2026-12-01T00:00:00+00:00"}
    assert dumped["send_window"]["days"] == ["mon", "fri"]
    assert (dumped["send_window"]["start"], dumped["send_window"]["end"]) == ("09:00", "01:00")
    assert dumped["trigger"]["action"] == "clicked"
