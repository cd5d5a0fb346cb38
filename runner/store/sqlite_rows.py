"""SQLite's side of the row conversions (runner.store.rows): times as sortable UTC text."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from runner.store.dialect import Dialect
from runner.store.rows import RowCodec, dumps, loads, opt_dumps

__all__ = ["dumps", "loads", "opt_dumps"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def marks(count: int) -> str:
    """`?, ?, ...` for an IN list of `count` values."""
    return ", ".join("?" * count)


# Both conversions are pure and the same instants come by the hundred (a round's `now` on
# every outcome, a claim's lease on every claimed row, an event's receipt on its subscriber,
# entry and send): cached, they cost a lookup. Equal instants give equal texts, whatever
# their time zone, so the cache may key on equality.
@functools.lru_cache(maxsize=1024)
def time_text(instant: datetime) -> str:
    """An aware datetime as fixed-width UTC text with microseconds (sorts like the instant)."""
    return _utc_text(instant)


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


@functools.lru_cache(maxsize=1024)
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
