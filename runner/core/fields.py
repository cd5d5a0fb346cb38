"""The value types of the file format: durations, day offsets, times of day, time zones,
instants, cron expressions, field paths and ids, each validated and normalised while
loading (durations to seconds, times to `HH:MM`, instants to UTC); pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from runner.core import durations

ID_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
EVENT_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
FIELD_PATH_PATTERN = r"^(subscriber|event)(\.[A-Za-z0-9_-]+)+$"


def _duration(minimum: int) -> Any:
    def parse(value: object) -> int:
        seconds = durations.parse_duration(value) if isinstance(value, str) else None
        if seconds is None:
            raise PydanticCustomError(
                "invalid-duration",
                "`{value}` is not a duration such as 30s, 15m, 12h, 7d, 2w or 1d12h",
                {"value": value},
            )
        if seconds < minimum:
            raise PydanticCustomError(
                "invalid-duration", "the duration must be longer than zero", {"value": value}
            )
        return seconds

    return BeforeValidator(parse)


_DURATION_SCHEMA = WithJsonSchema(
    {"type": "string", "pattern": durations.DURATION_PATTERN, "examples": ["30s", "7d", "1d12h"]}
)
_AS_TEXT = PlainSerializer(durations.format_duration, return_type=str, when_used="json")
Duration = Annotated[int, _duration(0), _AS_TEXT, _DURATION_SCHEMA]
PositiveDuration = Annotated[int, _duration(1), _AS_TEXT, _DURATION_SCHEMA]


def _day_offset(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    seconds = durations.parse_day_offset(value) if isinstance(value, str) else None
    if seconds is None:
        raise PydanticCustomError(
            "invalid-duration",
            "`{value}` is not a whole number of days or weeks such as -3d or 1w",
            {"value": value},
        )
    return seconds


DayOffset = Annotated[
    int,
    BeforeValidator(_day_offset),
    PlainSerializer(
        lambda s: durations.format_duration(s) if s else 0, return_type=str | int, when_used="json"
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": durations.DAY_OFFSET_PATTERN},
                {"const": 0},
            ],
            "examples": ["-3d", "1w"],
        }
    ),
]


def _time_of_day(value: object) -> str:
    normal = durations.normalise_time(value) if isinstance(value, str) else None
    if normal is None:
        raise PydanticCustomError(
            "invalid-time", '`{value}` is not a time of day "HH:MM"', {"value": value}
        )
    return normal


TimeOfDay = Annotated[
    str,
    BeforeValidator(_time_of_day),
    WithJsonSchema({"type": "string", "pattern": durations.TIME_PATTERN, "examples": ["09:00"]}),
]


def _timezone(allow_subscriber: bool) -> Any:
    def check(value: str) -> str:
        if value == "subscriber" and allow_subscriber:
            return value
        if not durations.is_timezone(value):
            raise PydanticCustomError(
                "invalid-timezone", "`{value}` is not an IANA time zone name", {"value": value}
            )
        return value

    return AfterValidator(check)


TimeZone = Annotated[str, _timezone(False)]
TimeZoneOrSubscriber = Annotated[str, _timezone(True)]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Instant = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _cron(value: str) -> str:
    problem = durations.cron_problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid-cron", problem)
    return " ".join(value.split())


Cron = Annotated[str, AfterValidator(_cron)]


def _field_path(value: str) -> str:
    import re

    if re.match(FIELD_PATH_PATTERN, value) is None:
        raise PydanticCustomError(
            "invalid-field-path",
            "`{value}` is not a dotted path starting with `subscriber.` or `event.`",
            {"value": value},
        )
    return value


FieldPath = Annotated[
    str,
    AfterValidator(_field_path),
    WithJsonSchema({"type": "string", "pattern": FIELD_PATH_PATTERN}),
]
AutomationId = Annotated[str, Field(pattern=ID_PATTERN)]
EventName = Annotated[str, Field(pattern=EVENT_NAME_PATTERN, max_length=200)]
Scalar = str | int | float | bool


class StrictModel(BaseModel):
    """A part of an automation file: unknown keys are errors, and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)
