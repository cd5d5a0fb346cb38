"""`ReadTx` over one PostgreSQL connection: the queries every transaction can run."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

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
from runner.store import postgres_rows as rows
from runner.store.base import Stats
from runner.store.postgres_people import PeopleReads
from runner.store.rows import stats_of

ACTIVE = (SendStatus.PENDING.value, SendStatus.CLAIMED.value)

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

_SEND_STATS = """
SELECT status, reason, COUNT(*) AS sends
FROM pending_sends WHERE automation_id = %s
GROUP BY status, reason
"""

# Every accepted trigger is an entry (a re-anchoring one creates no first email).
_TRIGGERED = (
    "SELECT COALESCE(SUM(count), 0)::bigint AS triggered FROM entries WHERE automation_id = %s"
)


class PgReadTx(PeopleReads):
    """Reads inside one PostgreSQL transaction (the store begins and ends it)."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.conn = connection

    def _all(self, sql: str, *args: object) -> list[rows.Row]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchall()

    def _one(self, sql: str, *args: object) -> rows.Row | None:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, args or None)
            return cursor.fetchone()

    def _run(self, sql: str, args: Sequence[object] | dict[str, object] | None = None) -> int:
        """Execute a statement; the number of rows it changed."""
        with self.conn.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.rowcount

    def automations(self) -> list[AppliedAutomation]:
        """Every applied automation, deleted ones included, by id."""
        return [rows.automation_of(r) for r in self._all("SELECT * FROM automations ORDER BY id")]

    def automation(self, automation_id: str) -> AppliedAutomation | None:
        """One applied automation."""
        row = self._one("SELECT * FROM automations WHERE id = %s", automation_id)
        return None if row is None else rows.automation_of(row)

    def history(self, automation_id: str) -> list[HistoryEntry]:
        """Applied changes of one automation, oldest first."""
        found = self._all(
            "SELECT * FROM history WHERE automation_id = %s ORDER BY at, seq", automation_id
        )
        return [rows.history_of(r) for r in found]

    def status_changes(self) -> list[HistoryEntry]:
        """Every history entry of kind "status", oldest first."""
        found = self._all("SELECT * FROM history WHERE kind = 'status' ORDER BY at, seq")
        return [rows.history_of(r) for r in found]

    def subscriber(self, email: str) -> Subscriber | None:
        """A subscriber by normalised email."""
        row = self._one("SELECT * FROM subscribers WHERE email = %s", normalise_email(email))
        return None if row is None else rows.subscriber_of(row)

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """A subscriber by id."""
        row = self._one("SELECT * FROM subscribers WHERE id = %s", subscriber_id)
        return None if row is None else rows.subscriber_of(row)

    def subscribers(self, after_id: int, limit: int) -> list[Subscriber]:
        """Live (not deleted) subscribers with id > after_id, by id."""
        found = self._all(
            "SELECT * FROM subscribers WHERE id > %s AND deleted_at IS NULL ORDER BY id LIMIT %s",
            after_id,
            limit,
        )
        return [rows.subscriber_of(r) for r in found]

    def pending_send(self, send_id: str) -> PendingSend | None:
        """One pending send by id, whatever its status."""
        row = self._one("SELECT * FROM pending_sends WHERE id = %s", send_id)
        return None if row is None else rows.send_of(row)

    def pending_sends(
        self, automation_id: str, statuses: Collection[SendStatus], limit: int = 100
    ) -> list[PendingSend]:
        """Sends of one automation in the given statuses, by due time."""
        wanted = [SendStatus(s).value for s in statuses]
        found = self._all(
            "SELECT * FROM pending_sends WHERE automation_id = %s AND status = ANY(%s::text[])"
            " ORDER BY due_at, id LIMIT %s",
            automation_id,
            wanted,
            limit,
        )
        return [rows.send_of(r) for r in found]

    def active_sends(
        self, subscriber_id: int, automation_id: str | None = None
    ) -> list[PendingSend]:
        """PENDING and CLAIMED sends of a subscriber (optionally of one automation)."""
        sql = (
            "SELECT * FROM pending_sends"
            " WHERE subscriber_id = %s AND status IN ('pending', 'claimed')"
        )
        args: list[object] = [subscriber_id]
        if automation_id is not None:
            sql += " AND automation_id = %s"
            args.append(automation_id)
        return [rows.send_of(r) for r in self._all(sql + " ORDER BY due_at, id", *args)]

    def entry(self, automation_id: str, subscriber_id: int) -> Entry | None:
        """Retrigger memory of one subscriber in one automation."""
        row = self._one(
            "SELECT * FROM entries WHERE automation_id = %s AND subscriber_id = %s",
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
            "SELECT * FROM events WHERE email = %s AND type = ANY(%s::text[])"
            " AND received_at > %s ORDER BY seq",
            normalise_email(email),
            names,
            rows.instant(after),
        )
        return [rows.event_of(r) for r in found]

    def messages(self, limit: int, automation_id: str | None = None) -> list[Message]:
        """Messages, newest first."""
        if automation_id is None:
            found = self._all(
                "SELECT * FROM messages ORDER BY sent_at DESC, id DESC LIMIT %s", limit
            )
        else:
            found = self._all(
                "SELECT * FROM messages WHERE automation_id = %s"
                " ORDER BY sent_at DESC, id DESC LIMIT %s",
                automation_id,
                limit,
            )
        return [rows.message_of(r) for r in found]

    def message(self, message_id: str) -> Message | None:
        """One message by our id."""
        row = self._one("SELECT * FROM messages WHERE id = %s", message_id)
        return None if row is None else rows.message_of(row)

    def message_by_provider_id(self, provider: str, provider_message_id: str) -> Message | None:
        """One message by the provider's id for it (the latest, should a provider reuse one)."""
        row = self._one(
            "SELECT * FROM messages WHERE provider = %s AND provider_message_id = %s"
            " ORDER BY sent_at DESC LIMIT 1",
            provider,
            provider_message_id,
        )
        return None if row is None else rows.message_of(row)

    def message_events(self, message_id: str) -> list[MessageEvent]:
        """Provider events of one message, in receipt order."""
        found = self._all(
            "SELECT * FROM message_events WHERE message_id = %s ORDER BY seq", message_id
        )
        return [rows.message_event_of(r) for r in found]

    def messages_sent_between(
        self, automation_id: str, after: datetime, until: datetime
    ) -> list[Message]:
        """Messages of an automation sent in (after, until], oldest first."""
        found = self._all(
            "SELECT * FROM messages WHERE automation_id = %s AND sent_at > %s AND sent_at <= %s"
            " ORDER BY sent_at, id",
            automation_id,
            rows.instant(after),
            rows.instant(until),
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
        return stats_of(triggered["triggered"] if triggered is not None else 0, sends, counts)

    def queue_depth(self) -> int:
        """PENDING and CLAIMED sends, over every automation."""
        row = self._one(
            "SELECT COUNT(*) AS n FROM pending_sends WHERE status IN ('pending', 'claimed')"
        )
        return 0 if row is None else int(row["n"])

    def meta(self, key: str) -> str | None:
        """A runner-wide value."""
        row = self._one("SELECT value FROM meta WHERE key = %s", key)
        return None if row is None else str(row["value"])

    def failed_events(self, limit: int) -> list[StoredEvent]:
        """Events whose processing failed, newest first."""
        found = self._all(
            "SELECT * FROM events WHERE error IS NOT NULL ORDER BY seq DESC LIMIT %s", limit
        )
        return [rows.event_of(r) for r in found]

    def last_event_seq(self) -> int:
        """The highest event seq committed so far (0 when there is none)."""
        row = self._one("SELECT COALESCE(MAX(seq), 0) AS last FROM events")
        return 0 if row is None else int(row["last"])

    def has_unprocessed(self, through: int) -> bool:
        """Whether an event with seq <= `through` still waits (uses events_unprocessed)."""
        row = self._one("SELECT 1 FROM events WHERE NOT processed AND seq <= %s LIMIT 1", through)
        return row is not None

    def unprocessed_count(self) -> int:
        """How many events wait to be processed (counted on events_unprocessed)."""
        row = self._one("SELECT COUNT(*) AS n FROM events WHERE NOT processed")
        return 0 if row is None else int(row["n"])

    def event_by_id(self, client_id: str) -> StoredEvent | None:
        """The event received with this client id (while the id is remembered)."""
        row = self._one(
            "SELECT events.* FROM event_ids JOIN events ON events.seq = event_ids.seq"
            " WHERE event_ids.id = %s",
            client_id,
        )
        return None if row is None else rows.event_of(row)
