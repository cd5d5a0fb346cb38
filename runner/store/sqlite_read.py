"""`ReadTx` over one SQLite connection: the queries every transaction can run."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime

from runner.core.records import (
    AppliedAutomation,
    Entry,
    HistoryEntry,
    Message,
    MessageEvent,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
    normalise_email,
)
from runner.store import sqlite_rows as rows
from runner.store.base import Stats
from runner.store.rows import stats_of
from runner.store.sqlite_people import PeopleReads
from runner.store.sqlite_rows import marks

ACTIVE = (SendStatus.PENDING.value, SendStatus.CLAIMED.value)

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

_SEND_STATS = """
SELECT status, reason, COUNT(*) AS sends
FROM pending_sends WHERE automation_id = ?
GROUP BY status, reason
"""

# Every accepted trigger is an entry (a re-anchoring one creates no first email).
_TRIGGERED = "SELECT IFNULL(SUM(count), 0) AS triggered FROM entries WHERE automation_id = ?"


class SqliteReadTx(PeopleReads):
    """Reads inside one SQLite transaction (the caller begins and ends it)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    def _one(self, sql: str, *args: object) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute(sql, args).fetchone()
        return row

    def _all(self, sql: str, *args: object) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    def automations(self) -> list[AppliedAutomation]:
        """Every applied automation, deleted ones included, by id."""
        return [rows.automation_of(r) for r in self._all("SELECT * FROM automations ORDER BY id")]

    def automation(self, automation_id: str) -> AppliedAutomation | None:
        """One applied automation."""
        row = self._one("SELECT * FROM automations WHERE id = ?", automation_id)
        return None if row is None else rows.automation_of(row)

    def history(self, automation_id: str) -> list[HistoryEntry]:
        """Applied changes of one automation, oldest first."""
        found = self._all(
            "SELECT * FROM history WHERE automation_id = ? ORDER BY at, seq", automation_id
        )
        return [rows.history_of(r) for r in found]

    def status_changes(self) -> list[HistoryEntry]:
        """Every history entry of kind "status", oldest first."""
        found = self._all("SELECT * FROM history WHERE kind = 'status' ORDER BY at, seq")
        return [rows.history_of(r) for r in found]

    def subscriber(self, email: str) -> Subscriber | None:
        """A subscriber by normalised email."""
        row = self._one("SELECT * FROM subscribers WHERE email = ?", normalise_email(email))
        return None if row is None else rows.subscriber_of(row)

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """A subscriber by id."""
        row = self._one("SELECT * FROM subscribers WHERE id = ?", subscriber_id)
        return None if row is None else rows.subscriber_of(row)

    def subscribers(self, after_id: int, limit: int) -> list[Subscriber]:
        """Live (not deleted) subscribers with id > after_id, by id."""
        found = self._all(
            "SELECT * FROM subscribers WHERE id > ? AND deleted_at IS NULL ORDER BY id LIMIT ?",
            after_id,
            limit,
        )
        return [rows.subscriber_of(r) for r in found]

    def pending_send(self, send_id: str) -> PendingSend | None:
        """One pending send by id, whatever its status."""
        row = self._one("SELECT * FROM pending_sends WHERE id = ?", send_id)
        return None if row is None else rows.send_of(row)

    def pending_sends(
        self, automation_id: str, statuses: Collection[SendStatus], limit: int = 100
    ) -> list[PendingSend]:
        """Sends of one automation in the given statuses, by due time."""
        wanted = [SendStatus(s).value for s in statuses]
        found = self._all(
            "SELECT * FROM pending_sends WHERE automation_id = ?"
            f" AND status IN ({marks(len(wanted))}) ORDER BY due_at, id LIMIT ?",
            automation_id,
            *wanted,
            limit,
        )
        return [rows.send_of(r) for r in found]

    def active_sends(
        self, subscriber_id: int, automation_id: str | None = None
    ) -> list[PendingSend]:
        """PENDING and CLAIMED sends of a subscriber (optionally of one automation)."""
        sql = (
            "SELECT * FROM pending_sends"
            " WHERE subscriber_id = ? AND status IN ('pending', 'claimed')"
        )
        args: list[object] = [subscriber_id]
        if automation_id is not None:
            sql += " AND automation_id = ?"
            args.append(automation_id)
        return [rows.send_of(r) for r in self._all(sql + " ORDER BY due_at, id", *args)]

    def entry(self, automation_id: str, subscriber_id: int) -> Entry | None:
        """Retrigger memory of one subscriber in one automation."""
        row = self._one(
            "SELECT * FROM entries WHERE automation_id = ? AND subscriber_id = ?",
            automation_id,
            subscriber_id,
        )
        return None if row is None else rows.entry_of(row)

    def events_after(
        self, email: str, types: Collection[str], after: datetime
    ) -> list[StoredEvent]:
        """Events of a subscriber of the given types received strictly after `after`, by seq."""
        names = list(types)
        if not names:
            return []
        found = self._all(
            f"SELECT * FROM events WHERE email = ? AND type IN ({marks(len(names))})"
            " AND received_at > ? ORDER BY seq",
            normalise_email(email),
            *names,
            rows.time_text(after),
        )
        return [rows.event_of(r) for r in found]

    def messages(self, limit: int, automation_id: str | None = None) -> list[Message]:
        """Messages, newest first."""
        if automation_id is None:
            found = self._all(
                "SELECT * FROM messages ORDER BY sent_at DESC, id DESC LIMIT ?", limit
            )
        else:
            found = self._all(
                "SELECT * FROM messages WHERE automation_id = ?"
                " ORDER BY sent_at DESC, id DESC LIMIT ?",
                automation_id,
                limit,
            )
        return [rows.message_of(r) for r in found]

    def message(self, message_id: str) -> Message | None:
        """One message by our id."""
        row = self._one("SELECT * FROM messages WHERE id = ?", message_id)
        return None if row is None else rows.message_of(row)

    def message_by_provider_id(self, provider: str, provider_message_id: str) -> Message | None:
        """One message by the provider's id for it (the latest, should a provider reuse one)."""
        row = self._one(
            "SELECT * FROM messages WHERE provider = ? AND provider_message_id = ?"
            " ORDER BY sent_at DESC LIMIT 1",
            provider,
            provider_message_id,
        )
        return None if row is None else rows.message_of(row)

    def message_events(self, message_id: str) -> list[MessageEvent]:
        """Provider events of one message, in receipt order."""
        found = self._all(
            "SELECT * FROM message_events WHERE message_id = ? ORDER BY seq", message_id
        )
        return [rows.message_event_of(r) for r in found]

    def messages_sent_between(
        self, automation_id: str, after: datetime, until: datetime
    ) -> list[Message]:
        """Messages of an automation sent in (after, until], oldest first."""
        found = self._all(
            "SELECT * FROM messages WHERE automation_id = ? AND sent_at > ? AND sent_at <= ?"
            " ORDER BY sent_at, id",
            automation_id,
            rows.time_text(after),
            rows.time_text(until),
        )
        return [rows.message_of(r) for r in found]

    def stats(self, automation_id: str) -> Stats:
        """Counts of one automation, computed in SQL."""
        triggered = self._one(_TRIGGERED, automation_id)
        sends = [
            (row["status"], row["reason"], row["sends"])
            for row in self._all(_SEND_STATS, automation_id)
        ]
        counts = self._one(_MESSAGE_STATS, automation_id)
        assert counts is not None  # an aggregate always answers one row
        return stats_of(
            triggered["triggered"] if triggered is not None else 0,
            sends,
            dict(zip(counts.keys(), tuple(counts), strict=True)),
        )

    def queue_depth(self) -> int:
        """PENDING and CLAIMED sends, over every automation."""
        row = self._one("SELECT COUNT(*) FROM pending_sends WHERE status IN ('pending', 'claimed')")
        return 0 if row is None else int(row[0])

    def meta(self, key: str) -> str | None:
        """A runner-wide value."""
        row = self._one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else str(row["value"])

    def failed_events(self, limit: int) -> list[StoredEvent]:
        """Events whose processing failed, newest first."""
        found = self._all(
            "SELECT * FROM events WHERE error IS NOT NULL ORDER BY seq DESC LIMIT ?", limit
        )
        return [rows.event_of(r) for r in found]

    def last_event_seq(self) -> int:
        """The highest event seq committed so far (0 when there is none)."""
        row = self._one("SELECT IFNULL(MAX(seq), 0) AS last FROM events")
        return 0 if row is None else int(row["last"])

    def has_unprocessed(self, through: int) -> bool:
        """Whether an event with seq <= `through` still waits (uses events_unprocessed)."""
        row = self._one("SELECT 1 FROM events WHERE processed = 0 AND seq <= ? LIMIT 1", through)
        return row is not None

    def unprocessed_count(self) -> int:
        """How many events wait to be processed (counted on events_unprocessed)."""
        row = self._one("SELECT COUNT(*) AS n FROM events WHERE processed = 0")
        return 0 if row is None else int(row["n"])

    def event_by_id(self, client_id: str) -> StoredEvent | None:
        """The event received with this client id (while the id is remembered)."""
        row = self._one(
            "SELECT events.* FROM event_ids JOIN events ON events.seq = event_ids.seq"
            " WHERE event_ids.id = ?",
            client_id,
        )
        return None if row is None else rows.event_of(row)
