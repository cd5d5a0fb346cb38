"""SQLite queries of the subscribers API and of erasure, mixed into the read and write
transactions (runner.store.sqlite_read / sqlite_write)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

from runner.core.records import (
    Message,
    MessageEvent,
    PendingSend,
    StoredEvent,
    Subscriber,
    SubscriberQuery,
    SuppressionLift,
    normalise_email,
)
from runner.store import sqlite_rows as rows
from runner.store.rows import LIFT_COLUMNS, subscriber_page_sql
from runner.store.sqlite_rows import marks

_CHUNK = 500  # ids per IN list, well under SQLite's bound-variable limit
_LAST_CHARACTER = "\U0010ffff"  # sorts after every character under the BINARY collation


def _fetch(db: sqlite3.Connection, sql: str, *args: object) -> list[sqlite3.Row]:
    return db.execute(sql, args).fetchall()


def _chunks(ids: Collection[int]) -> list[list[int]]:
    ordered = sorted(ids)
    return [ordered[start : start + _CHUNK] for start in range(0, len(ordered), _CHUNK)]


class PeopleReads:
    """Subscriber listing, a person's sends, messages and lifts, and erasure lookups."""

    db: sqlite3.Connection

    def list_subscribers(self, query: SubscriberQuery) -> list[Subscriber]:
        """Live subscribers with id > query.after_id matching its filters, by id."""
        in_group = "EXISTS (SELECT 1 FROM json_each(subscribers.groups) WHERE value = ?)"
        sql, args = subscriber_page_sql(query, "?", in_group)
        found = _fetch(self.db, sql, *args)
        return [rows.subscriber_of(r) for r in found]

    def subscribers_by_prefix(self, prefix: str) -> list[Subscriber]:
        """Subscribers whose stored email starts with `prefix`, by id (a range on the
        email's unique index)."""
        found = _fetch(
            self.db,
            "SELECT * FROM subscribers WHERE email >= ? AND email < ? ORDER BY id",
            prefix,
            prefix + _LAST_CHARACTER,
        )
        return [rows.subscriber_of(r) for r in found]

    def events_of(self, email: str) -> list[StoredEvent]:
        """Every event stored under this normalised email, by seq."""
        found = _fetch(
            self.db, "SELECT * FROM events WHERE email = ? ORDER BY seq", normalise_email(email)
        )
        return [rows.event_of(r) for r in found]

    def subscriber_sends(self, subscriber_ids: Collection[int]) -> list[PendingSend]:
        """Sends of these subscribers in any status, by creation."""
        found: list[PendingSend] = []
        for chunk in _chunks(subscriber_ids):
            selected = _fetch(
                self.db,
                f"SELECT * FROM pending_sends WHERE subscriber_id IN ({marks(len(chunk))})",
                *chunk,
            )
            found.extend(rows.send_of(r) for r in selected)
        return sorted(found, key=lambda send: (send.created_at, send.id))

    def subscriber_messages(
        self, subscriber_ids: Collection[int], limit: int | None = None
    ) -> list[Message]:
        """Messages to these subscribers, newest first (all of them when `limit` is None)."""
        found: list[Message] = []
        for chunk in _chunks(subscriber_ids):
            selected = _fetch(
                self.db,
                f"SELECT * FROM messages WHERE subscriber_id IN ({marks(len(chunk))})"
                " ORDER BY sent_at DESC, id DESC LIMIT ?",
                *chunk,
                -1 if limit is None else limit,
            )
            found.extend(rows.message_of(r) for r in selected)
        found.sort(key=lambda message: (message.sent_at, message.id), reverse=True)
        return found if limit is None else found[:limit]

    def suppression_lifts(self, subscriber_id: int) -> list[SuppressionLift]:
        """Suppressions of one subscriber lifted through the API, oldest first."""
        found = _fetch(
            self.db,
            "SELECT * FROM suppression_lifts WHERE subscriber_id = ? ORDER BY seq",
            subscriber_id,
        )
        return [rows.lift_of(r) for r in found]


class PeopleWrites:
    """Lifted suppressions and the rewrites of erasure."""

    db: sqlite3.Connection

    def add_suppression_lift(self, lift: SuppressionLift) -> None:
        """Record a lifted suppression."""
        values = rows.lift_values(lift)
        self.db.execute(
            f"INSERT INTO suppression_lifts ({LIFT_COLUMNS}) VALUES ({marks(len(values))})",
            values,
        )

    def clear_lift_notes(self, subscriber_ids: Collection[int]) -> int:
        """Forget the free-text notes of these subscribers' lifts; how many had one."""
        cleared = 0
        for chunk in _chunks(subscriber_ids):
            cleared += self.db.execute(
                "UPDATE suppression_lifts SET note = NULL"
                f" WHERE subscriber_id IN ({marks(len(chunk))}) AND note IS NOT NULL",
                chunk,
            ).rowcount
        return cleared

    def rewrite_events(self, events: Sequence[StoredEvent]) -> None:
        """Overwrite who and what stored events name (by seq), renaming changed client ids."""
        self.db.executemany(
            "UPDATE events SET email = ?, client_id = ?, fields = ?, groups = ?, data = ?"
            " WHERE seq = ?",
            [
                (
                    normalise_email(e.email),
                    e.id,
                    rows.opt_dumps(e.fields),
                    rows.opt_dumps(e.groups),
                    rows.dumps(e.data),
                    e.seq,
                )
                for e in events
            ],
        )
        renamed = [(e.id, e.seq, e.id) for e in events if e.id is not None]
        self.db.executemany("UPDATE event_ids SET id = ? WHERE seq = ? AND id <> ?", renamed)

    def rewrite_sends(self, sends: Sequence[PendingSend]) -> None:
        """Overwrite the email, trigger event, overrides and last error of sends."""
        self.db.executemany(
            "UPDATE pending_sends SET email = ?, trigger_event = ?, overrides = ?,"
            " last_error = ? WHERE id = ?",
            [
                (
                    s.email,
                    rows.dumps(s.trigger_event),
                    rows.dumps(s.overrides),
                    s.last_error,
                    s.id,
                )
                for s in sends
            ],
        )

    def rewrite_messages(self, messages: Sequence[Message]) -> None:
        """Overwrite the recipient, subject, bodies and headers of messages."""
        self.db.executemany(
            "UPDATE messages SET to_address = ?, subject = ?, html = ?, text = ?, headers = ?"
            " WHERE id = ?",
            [(m.to, m.subject, m.html, m.text, rows.dumps(m.headers), m.id) for m in messages],
        )

    def rewrite_message_events(self, events: Sequence[MessageEvent]) -> None:
        """Overwrite the url of provider events, found by provider and event id."""
        self.db.executemany(
            "UPDATE message_events SET url = ? WHERE provider = ? AND provider_event_id = ?",
            [(e.url, e.provider, e.provider_event_id) for e in events],
        )
