"""PostgreSQL's side of the row conversions (runner.store.rows): instants are TIMESTAMPTZ
(aware datetimes both ways, read back in UTC); JSON is the same canonical text as SQLite's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runner.store.dialect import Dialect
from runner.store.rows import SEND_COLUMNS, RowCodec, dumps, loads, opt_dumps

Row = dict[str, Any]

__all__ = ["SEND_COLUMNS", "dumps", "loads", "opt_dumps"]


def instant(value: datetime) -> datetime:
    """An aware datetime in UTC; naive ones are refused like SQLite's `time_text` does."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store keeps aware instants")
    return value.astimezone(UTC)


def read_time(value: datetime) -> datetime:
    """A TIMESTAMPTZ as read: the same instant with the `datetime.UTC` zone SQLite gives."""
    return value.astimezone(UTC)


CODEC = RowCodec(instant, read_time, bool)

POSTGRES = Dialect(
    name="postgres",
    positional="%s",
    named="%({})s",
    unprocessed="NOT processed",
    in_group="jsonb_exists(groups::jsonb, %s)",
    # `json` (not jsonb) reads any stored text; only de-escaping a NUL fails, so a row holding
    # one is passed through to the audience check rather than failing the whole page. `#>>`
    # gives a number's or a list's text too: only a JSON string is let through, so the test
    # is exact (`decided` in runner/core/prefilter.py).
    field_in=(
        "CASE WHEN strpos(subscribers.fields, '\\u0000') > 0 THEN TRUE"
        " ELSE (subscribers.fields::json #>> '{{{commas}}}') IN ({marks})"
        " AND json_typeof(subscribers.fields::json #> '{{{commas}}}') = 'string' END"
    ),
    exact_fields=True,
    day="to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    codec=CODEC,
    batch=None,
)
