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


# The last two instants written and their texts: an event's processing writes the same
# instant (its receipt) five or six times (subscriber, derived event, entry, send). Replaced
# as one tuple, so threads sharing it never see a time with another's text.
_RECENT: tuple[datetime | None, str, datetime | None, str] = (None, "", None, "")


def time_text(instant: datetime) -> str:
    """An aware datetime as fixed-width UTC text with microseconds (sorts like the instant)."""
    global _RECENT
    recent = _RECENT
    if instant is recent[0]:
        return recent[1]
    if instant is recent[2]:
        return recent[3]
    text = _utc_text(instant)
    _RECENT = (instant, text, recent[0], recent[1])
    return text


def _utc_text(instant: datetime) -> str:
    # Every stored time passes here: isoformat is faster than strftime and gives the same
    # text (tests/test_store_time_text.py), except below year 1000, where strftime does not
    # pad the year. Most instants are already in UTC and skip the conversion.
    if instant.tzinfo is not UTC:
        offset = instant.utcoffset()
        if offset is None:
            raise ValueError(
                f"naive datetime {instant.isoformat()}: the store keeps aware instants"
            )
        instant = (instant.replace(tzinfo=None) - offset).replace(tzinfo=UTC)
    if instant.year < 1000:
        return instant.strftime(_TIME_FORMAT)
    return instant.isoformat(timespec="microseconds")[:-6] + "Z"  # without "+00:00"


def parse_time(text: str) -> datetime:
    """The aware UTC datetime of a stored time."""
    return datetime.fromisoformat(text).astimezone(UTC)


CODEC = RowCodec(time_text, parse_time, int)

SQLITE = Dialect(
    name="sqlite",
    positional="?",
    named=":{}",
    unprocessed="processed = 0",
    in_group="EXISTS (SELECT 1 FROM json_each(subscribers.groups) WHERE value = ?)",
    field_in="json_extract(subscribers.fields, '$.{dotted}') IN ({marks})",
    exact_fields=True,
    day="substr({}, 1, 10)",
    codec=CODEC,
    batch=500,  # well under SQLite's bound-variable limit
)
