"""The dashboard's reads, written once for both stores: message counts by revision and by
day, sends per day of several automations, top links; and the commit subjects the reloader
records so that stats by revision never run git when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from runner.store.dashboard_stats import DayStats, MessageCounts, RevisionStats
from runner.store.dialect import Dialect
from runner.store.rows import Row
from runner.store.sql_read import SqlReadTx

# One row per message of one automation: its group (`{group}`), subscriber and whether it
# was delivered, opened, clicked (a message counts once however many events it received;
# the outbox delivers every message it stored unless it failed).
_PER_MESSAGE = """
SELECT {group} AS grp, m.subscriber_id AS subscriber_id,
    CASE WHEN (m.provider_type = 'outbox' AND m.status <> 'failed')
        OR MAX(CASE WHEN e.type IN ('delivered', 'opened', 'clicked') THEN 1 ELSE 0 END) = 1
        THEN 1 ELSE 0 END AS delivered,
    MAX(CASE WHEN e.type IN ('opened', 'clicked') THEN 1 ELSE 0 END) AS opened,
    MAX(CASE WHEN e.type = 'clicked' THEN 1 ELSE 0 END) AS clicked
FROM messages m LEFT JOIN message_events e ON e.message_id = m.id
WHERE {owner}{where}
GROUP BY m.id
"""
_COUNTS = """
SELECT grp, COUNT(*) AS sent, SUM(delivered) AS delivered, SUM(opened) AS opened,
    SUM(clicked) AS clicked,
    COUNT(DISTINCT CASE WHEN opened = 1 THEN subscriber_id END) AS unique_openers,
    COUNT(DISTINCT CASE WHEN clicked = 1 THEN subscriber_id END) AS unique_clickers
FROM ({per_message}) per_message
GROUP BY grp ORDER BY grp
"""


class DashboardQueries:
    """The statements above rendered for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        r = dialect.render
        day = dialect.day.format("m.sent_at")
        one = "m.automation_id = ?"
        by_revision = _PER_MESSAGE.format(group="m.revision", owner=one, where="")
        by_day = _PER_MESSAGE.format(group=day, owner=one, where=" AND m.sent_at >= ?")
        # Several automations at once; `{ids}` is the dialect's list test, filled per call.
        recent = _PER_MESSAGE.format(
            group="m.automation_id", owner="{ids}", where=" AND m.sent_at >= " + dialect.positional
        )
        self.recent = _COUNTS.format(per_message=recent)
        self.by_revision = r(_COUNTS.format(per_message=by_revision))
        self.by_day = r(_COUNTS.format(per_message=by_day))
        self.revisions = r(
            "SELECT r.revision, r.commit_sha, r.applied_at, c.subject"
            " FROM automation_revisions r LEFT JOIN commits c ON c.sha = r.commit_sha"
            " WHERE r.automation_id = ? ORDER BY r.revision"
        )
        self.sends_per_day = (
            f"SELECT automation_id, {dialect.day.format('sent_at')} AS day, COUNT(*) AS sent"
            " FROM messages WHERE {ids} AND sent_at >= " + dialect.positional + ""
            " GROUP BY automation_id, day"
        )
        self.top_links = r(
            "SELECT e.url AS url, COUNT(DISTINCT e.message_id) AS clicks"
            " FROM messages m JOIN message_events e ON e.message_id = m.id"
            " WHERE m.automation_id = ? AND e.type = 'clicked' AND e.url IS NOT NULL"
            " GROUP BY e.url ORDER BY clicks DESC, url LIMIT ?"
        )
        # The first open (or click, which implies one) of each opened message.
        self.first_opens = r(
            "SELECT m.sent_at AS sent_at, MIN(e.occurred_at) AS first_open"
            " FROM messages m JOIN message_events e ON e.message_id = m.id"
            " WHERE m.automation_id = ? AND e.type IN ('opened', 'clicked') GROUP BY m.id"
        )
        self.record_revision = r(
            "INSERT INTO automation_revisions (automation_id, revision, commit_sha, applied_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (automation_id, revision) DO NOTHING"
        )
        self.record_commit = r(
            "INSERT INTO commits (sha, subject) VALUES (?, ?) ON CONFLICT (sha) DO NOTHING"
        )


def _counts(row: Row) -> MessageCounts:
    return MessageCounts(
        int(row["sent"]),
        int(row["delivered"] or 0),
        int(row["opened"] or 0),
        int(row["clicked"] or 0),
        int(row["unique_openers"]),
        int(row["unique_clickers"]),
    )


class DashboardReads(SqlReadTx):
    """The reads above over a store's connection (mixed into both stores' transactions)."""

    dashboard: DashboardQueries

    def stats_by_revision(self, automation_id: str) -> list[RevisionStats]:
        """Message counts per revision that rendered messages, oldest revision first."""
        read = self.dialect.codec.opt_read_time
        known = {
            row["revision"]: (row["commit_sha"], row["subject"], read(row["applied_at"]))
            for row in self._all(self.dashboard.revisions, automation_id)
        }
        found = []
        for row in self._all(self.dashboard.by_revision, automation_id):
            commit, subject, applied_at = known.get(row["grp"], (None, None, None))
            found.append(RevisionStats(int(row["grp"]), commit, subject, applied_at, _counts(row)))
        return found

    def stats_by_day(self, automation_id: str, since: datetime) -> list[DayStats]:
        """Message counts per UTC day of sending, for messages sent at or after `since`."""
        rows = self._all(self.dashboard.by_day, automation_id, self.dialect.write_time(since))
        return [DayStats(str(row["grp"]), _counts(row)) for row in rows]

    def sends_per_day(
        self, automation_ids: Sequence[str], since: datetime
    ) -> dict[str, dict[str, int]]:
        """Messages sent per UTC day (`YYYY-MM-DD`) at or after `since`, by automation."""
        found: dict[str, dict[str, int]] = {ident: {} for ident in automation_ids}
        for batch in self.dialect.batches(list(automation_ids)):
            test, args = self.dialect.one_of("automation_id", batch)
            sql = self.dashboard.sends_per_day.format(ids=test)
            for row in self._all(sql, *args, self.dialect.write_time(since)):
                found[row["automation_id"]][str(row["day"])] = int(row["sent"])
        return found

    def recent_counts(
        self, automation_ids: Sequence[str], since: datetime
    ) -> dict[str, MessageCounts]:
        """Message counts of messages sent at or after `since`, by automation (a bounded
        window: an automation's lifetime totals grow without end)."""
        found = {ident: MessageCounts() for ident in automation_ids}
        for batch in self.dialect.batches(list(automation_ids)):
            test, args = self.dialect.one_of("m.automation_id", batch)
            sql = self.dashboard.recent.format(ids=test)
            for row in self._all(sql, *args, self.dialect.write_time(since)):
                found[row["grp"]] = _counts(row)
        return found

    def opened_within(self, automation_id: str, window: timedelta) -> int:
        """Messages of one automation first opened within `window` of their sending."""
        read = self.dialect.codec.opt_read_time
        found = 0
        for row in self._all(self.dashboard.first_opens, automation_id):
            sent, opened = read(row["sent_at"]), read(row["first_open"])
            if sent is not None and opened is not None and opened - sent <= window:
                found += 1
        return found

    def top_links(self, automation_id: str, limit: int = 10) -> list[tuple[str, int]]:
        """Clicked links of one automation by messages clicked, most first."""
        rows = self._all(self.dashboard.top_links, automation_id, limit)
        return [(str(row["url"]), int(row["clicks"])) for row in rows]


class DashboardWrites(DashboardReads):
    """The revision and commit records behind stats by revision."""

    def record_revision(
        self, automation_id: str, revision: int, commit: str | None, at: datetime
    ) -> None:
        """Remember the commit of an applied revision (the first one recorded stays)."""
        args = (automation_id, revision, commit, self.dialect.write_time(at))
        self._run(self.dashboard.record_revision, args)

    def record_commit(self, sha: str, subject: str) -> None:
        """Remember an applied commit's subject line."""
        self._run(self.dashboard.record_commit, (sha, subject))
