"""SQLite's side of the row conversions (runner.store.rows): times as sortable UTC text."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.store.dialect import Dialect
from runner.store.rows import RowCodec, dumps, loads, opt_dumps

__all__ = ["dumps", "loads", "opt_dumps"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def marks(count: int) -> str:
    """`?, ?, ...` for an IN list of `count` values."""
    return ", ".join("?" * count)


def time_text(instant: datetime) -> str:
    """An aware datetime as fixed-width UTC text with microseconds (sorts like the instant)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: the store keeps aware instants")
    return instant.astimezone(UTC).strftime(_TIME_FORMAT)


def opt_time_text(instant: datetime | None) -> str | None:
    """`time_text`, keeping None."""
    return None if instant is None else time_text(instant)


def parse_time(text: str) -> datetime:
    """The aware UTC datetime of a stored time."""
    return datetime.fromisoformat(text).astimezone(UTC)


def opt_time(text: str | None) -> datetime | None:
    """`parse_time`, keeping None."""
    return None if text is None else parse_time(text)


CODEC = RowCodec(time_text, parse_time, int)
event_of = CODEC.event_of
subscriber_of = CODEC.subscriber_of
subscriber_values = CODEC.subscriber_values
lift_of = CODEC.lift_of
lift_values = CODEC.lift_values
automation_of = CODEC.automation_of
history_of = CODEC.history_of
entry_of = CODEC.entry_of
send_of = CODEC.send_of
send_values = CODEC.send_values
message_of = CODEC.message_of
message_values = CODEC.message_values
message_event_of = CODEC.message_event_of

SQLITE = Dialect(
    name="sqlite",
    positional="?",
    named=":{}",
    unprocessed="processed = 0",
    in_group="EXISTS (SELECT 1 FROM json_each(subscribers.groups) WHERE value = ?)",
    codec=CODEC,
    write_time=time_text,
    flag=int,
    batch=500,  # well under SQLite's bound-variable limit
)
