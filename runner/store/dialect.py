"""What separates the SQL of the two stores once queries are written once (pure).

Shared statements use SQLite's placeholders (`?` and `:name`); a `Dialect` renders them
for its driver once, at import, so no query is rewritten on the hot paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from runner.store.rows import RowCodec

T = TypeVar("T")

# A `:name` parameter, not the second colon of a `::type` cast.
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Dialect:
    """Placeholders, the few spellings that differ, and the row codec of one database."""

    name: str
    positional: str  # the driver's positional placeholder
    named: str  # the driver's named placeholder, `{}` standing for the name
    unprocessed: str  # the test of `events.processed` its partial index is built on
    in_group: str  # the test of `subscribers.groups` (a JSON array) holding one bound name
    # The test of `subscribers.fields` (JSON text) holding a string among bound values at a
    # path of plain keys: `{dotted}` is the path as `a.b`, `{commas}` as `a,b`, `{marks}` the
    # placeholders. It may pass extra rows (the audience is evaluated after), never miss one.
    field_in: str
    # Whether `field_in` matches exactly the rows the audience check would (`decided` in
    # runner/core/prefilter.py), so those rows skip it.
    exact_fields: bool
    day: str  # the UTC day (`YYYY-MM-DD` text) of the time column named `{}`
    codec: RowCodec
    batch: int | None  # values per list test (SQLite bounds its host parameters); None: all

    @property
    def write_time(self) -> Callable[[datetime], Any]:
        """A time as the driver binds it (the codec's)."""
        return self.codec.write_time

    @property
    def flag(self) -> Callable[[bool], Any]:
        """A boolean as the driver binds it (the codec's)."""
        return self.codec.flag

    def render(self, sql: str) -> str:
        """`sql` with this dialect's placeholders."""
        if self.positional == "?":
            return sql
        if "%" in sql:
            # psycopg reads `%` as a placeholder; shared text never needs one.
            raise ValueError(f"shared SQL may not contain '%': {sql!r}")
        with_names = _NAMED.sub(lambda m: self.named.format(m.group(1)), sql)
        return with_names.replace("?", self.positional)

    def one_of(
        self, column: str, values: Sequence[object], sql_type: str = "text"
    ) -> tuple[str, list[object]]:
        """A test of `column` (of `sql_type`) against a list of values, and its arguments."""
        if self.positional == "?":
            return f"{column} IN ({', '.join('?' * len(values))})", list(values)
        return f"{column} = ANY(%s::{sql_type}[])", [list(values)]

    def batches(self, values: Sequence[T]) -> list[Sequence[T]]:
        """`values` cut into lists a single `one_of` test may hold."""
        size = self.batch or max(len(values), 1)
        return [values[start : start + size] for start in range(0, len(values), size)]
