"""`ReadTx` over one PostgreSQL connection: the shared reads (runner.store.sql_read) run here."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from runner.core.records import Subscriber
from runner.store.postgres_rows import CODEC, POSTGRES, Row
from runner.store.read_queries import ReadQueries
from runner.store.sql_dashboard import DashboardQueries, DashboardReads
from runner.store.sql_people import PeopleReads

# The same counts as SQLite's query: a message counts once per kind however many
# events of that kind it received; the outbox delivers every message it stored unless it failed.
_MESSAGE_STATS = """
WITH per_message AS (
    SELECT m.subscriber_id AS subscriber_id,
        (m.provider_type = 'outbox' AND m.status <> 'failed')
            OR COALESCE(bool_or(e.type IN ('delivered', 'opened', 'clicked')), FALSE)
            AS delivered,
        COALESCE(bool_or(e.type IN ('opened', 'clicked')), FALSE) AS opened,
        COALESCE(bool_or(e.type = 'clicked'), FALSE) AS clicked,
        COALESCE(bool_or(e.type = 'bounced' AND COALESCE(e.bounce, 'hard') = 'hard'), FALSE)
            AS hard,
        COALESCE(bool_or(e.type = 'bounced' AND e.bounce = 'soft'), FALSE) AS soft,
        COALESCE(bool_or(e.type = 'complained'), FALSE) AS complained,
        COALESCE(bool_or(e.type = 'unsubscribed'), FALSE) AS unsubscribed
    FROM messages m LEFT JOIN message_events e ON e.message_id = m.id
    WHERE m.automation_id = %s
    GROUP BY m.id
)
SELECT
    COUNT(*) FILTER (WHERE delivered) AS delivered,
    COUNT(*) FILTER (WHERE opened) AS opened,
    COUNT(*) FILTER (WHERE clicked) AS clicked,
    COUNT(DISTINCT subscriber_id) FILTER (WHERE opened) AS unique_openers,
    COUNT(DISTINCT subscriber_id) FILTER (WHERE clicked) AS unique_clickers,
    COUNT(*) FILTER (WHERE hard) AS bounced_hard,
    COUNT(*) FILTER (WHERE soft) AS bounced_soft,
    COUNT(*) FILTER (WHERE complained) AS complained,
    COUNT(*) FILTER (WHERE unsubscribed) AS unsubscribed
FROM per_message
"""

_READS = ReadQueries(POSTGRES)


# Rows per multi-row insert, within the server's 65,535 parameters per statement.
_ROWS = 1000
_PARAMETERS = 65_535


@functools.lru_cache(maxsize=64)
def _multi_row(sql: str, rows: int) -> str:
    """A one-row `INSERT ... VALUES (%s, ...) [tail]` made to insert `rows` rows, with
    numbered placeholders ($1, $2, ...)."""
    head, _, rest = sql.partition(" VALUES (")
    row, _, tail = rest.partition(")")
    pieces = row.split("%s")
    number = itertools.count(1)
    tuples = [
        "("
        + "".join(
            p + (f"${next(number)}" if i < len(pieces) - 1 else "") for i, p in enumerate(pieces)
        )
        + ")"
        for _ in range(rows)
    ]
    return f"{head} VALUES {', '.join(tuples)}{tail}"


class PgReadTx(DashboardReads, PeopleReads):
    """Reads inside one PostgreSQL transaction (the store begins and ends it)."""

    dialect = POSTGRES
    reads = _READS
    dashboard = DashboardQueries(POSTGRES)
    message_stats = _MESSAGE_STATS

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.conn = connection

    def _all(self, sql: str, *args: object) -> list[Row]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchall()

    def _one(self, sql: str, *args: object) -> Row | None:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchone()

    def _run(self, sql: str, args: Sequence[object] | Mapping[str, object] = ()) -> int:
        """Execute a statement; the number of rows it changed."""
        with self.conn.cursor() as cursor:
            cursor.execute(sql, args or None)
            return cursor.rowcount

    def _many(self, sql: str, values: Sequence[Sequence[object]]) -> None:
        """Execute a statement once per tuple of `values`."""
        if values:
            with self.conn.cursor() as cursor:
                cursor.executemany(sql, values)

    def _insert_rows(self, sql: str, values: Sequence[Sequence[object]]) -> None:
        """One multi-row statement per chunk: the server inserts a page of rows in one go
        instead of executing the statement once per row. Its placeholders are numbered here
        (a raw cursor), so psycopg does not parse a statement of thousands of them."""
        if not values:
            return
        width = len(values[0])
        size = max(1, min(_ROWS, _PARAMETERS // max(width, 1)))
        with psycopg.RawCursor(self.conn) as cursor:
            for start in range(0, len(values), size):
                chunk = values[start : start + size]
                statement = _multi_row(sql, len(chunk))
                cursor.execute(statement, [value for one in chunk for value in one])

    def subscribers_by_prefix(self, prefix: str) -> list[Subscriber]:
        """Subscribers whose stored email starts with `prefix`, by id.

        A scan: the email index follows the database's collation, which need not order text
        by its characters; erasure is rare enough not to need another index.
        """
        found = self._all(
            "SELECT * FROM subscribers WHERE starts_with(email, %s) ORDER BY id", prefix
        )
        return [CODEC.subscriber_of(r) for r in found]
