"""`ReadTx` over one SQLite connection: the shared reads (runner.store.sql_read) run here."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from runner.core.records import Subscriber
from runner.store.read_queries import ReadQueries
from runner.store.sql_dashboard import DashboardQueries, DashboardReads
from runner.store.sql_people import PeopleReads
from runner.store.sqlite_rows import CODEC, SQLITE

# One pass over the automation's messages and their provider events: a message
# counts once per kind however many events of that kind it received. The outbox delivers
# every message it stored, but not one that failed before reaching it.
_MESSAGE_STATS = """
WITH per_message AS (
    SELECT m.subscriber_id AS subscriber_id,
        (m.provider_type = 'outbox' AND m.status <> 'failed')
            OR IFNULL(MAX(e.type IN ('delivered', 'opened', 'clicked')), 0) AS delivered,
        IFNULL(MAX(e.type IN ('opened', 'clicked')), 0) AS opened,
        IFNULL(MAX(e.type = 'clicked'), 0) AS clicked,
        IFNULL(MAX(e.type = 'bounced' AND IFNULL(e.bounce, 'hard') = 'hard'), 0) AS hard,
        IFNULL(MAX(e.type = 'bounced' AND e.bounce = 'soft'), 0) AS soft,
        IFNULL(MAX(e.type = 'complained'), 0) AS complained,
        IFNULL(MAX(e.type = 'unsubscribed'), 0) AS unsubscribed
    FROM messages m LEFT JOIN message_events e ON e.message_id = m.id
    WHERE m.automation_id = ?
    GROUP BY m.id
)
SELECT
    IFNULL(SUM(delivered), 0) AS delivered,
    IFNULL(SUM(opened), 0) AS opened,
    IFNULL(SUM(clicked), 0) AS clicked,
    COUNT(DISTINCT CASE WHEN opened THEN subscriber_id END) AS unique_openers,
    COUNT(DISTINCT CASE WHEN clicked THEN subscriber_id END) AS unique_clickers,
    IFNULL(SUM(hard), 0) AS bounced_hard,
    IFNULL(SUM(soft), 0) AS bounced_soft,
    IFNULL(SUM(complained), 0) AS complained,
    IFNULL(SUM(unsubscribed), 0) AS unsubscribed
FROM per_message
"""

_READS = ReadQueries(SQLITE)
_LAST_CHARACTER = "\U0010ffff"  # sorts after every character under the BINARY collation


class SqliteReadTx(DashboardReads, PeopleReads):
    """Reads inside one SQLite transaction (the caller begins and ends it)."""

    dialect = SQLITE
    reads = _READS
    dashboard = DashboardQueries(SQLITE)
    message_stats = _MESSAGE_STATS

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    def _one(self, sql: str, *args: object) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, args).fetchone()
        return row

    def _all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    def _run(self, sql: str, args: Sequence[object] | Mapping[str, object] = ()) -> int:
        """Execute a statement; the number of rows it changed."""
        return self.db.execute(sql, args).rowcount

    def _many(self, sql: str, values: Sequence[Sequence[object]]) -> None:
        """Execute a statement once per tuple of `values`."""
        self.db.executemany(sql, values)

    def subscribers_by_prefix(self, prefix: str) -> list[Subscriber]:
        """Subscribers whose stored email starts with `prefix`, by id (a range on the
        email's unique index)."""
        found = self._all(
            "SELECT * FROM subscribers WHERE email >= ? AND email < ? ORDER BY id",
            prefix,
            prefix + _LAST_CHARACTER,
        )
        return [CODEC.subscriber_of(r) for r in found]
