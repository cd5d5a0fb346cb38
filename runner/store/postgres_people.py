"""PostgreSQL queries of the subscribers API and of erasure, mixed into the read and write
transactions (runner.store.postgres_read / postgres_write)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

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
from runner.store import postgres_rows as rows
from runner.store.rows import LIFT_COLUMNS, subscriber_page_sql


def _fetch(conn: psycopg.Connection[Any], sql: str, *args: object) -> list[rows.Row]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql, args or None)
        return cursor.fetchall()


def _many(conn: psycopg.Connection[Any], sql: str, values: Sequence[Sequence[object]]) -> None:
    if values:
        with conn.cursor() as cursor:
            cursor.executemany(sql, values)


class PeopleReads:
    """Subscriber listing, a person's sends, messages and lifts, and erasure lookups."""

    conn: psycopg.Connection[Any]

    def list_subscribers(self, query: SubscriberQuery) -> list[Subscriber]:
        """Live subscribers with id > query.after_id matching its filters, by id."""
        sql, args = subscriber_page_sql(query, "%s", "jsonb_exists(groups::jsonb, %s)")
        found = _fetch(self.conn, sql, *args)
        return [rows.subscriber_of(r) for r in found]

    def subscribers_by_prefix(self, prefix: str) -> list[Subscriber]:
        """Subscribers whose stored email starts with `prefix`, by id.

        A scan: the email index follows the database's collation, which need not order text
        by its characters; erasure is rare enough not to need another index.
        """
        found = _fetch(
            self.conn, "SELECT * FROM subscribers WHERE starts_with(email, %s) ORDER BY id", prefix
        )
        return [rows.subscriber_of(r) for r in found]

    def events_of(self, email: str) -> list[StoredEvent]:
        """Every event stored under this normalised email, by seq."""
        found = _fetch(
            self.conn, "SELECT * FROM events WHERE email = %s ORDER BY seq", normalise_email(email)
        )
        return [rows.event_of(r) for r in found]

    def subscriber_sends(self, subscriber_ids: Collection[int]) -> list[PendingSend]:
        """Sends of these subscribers in any status, by creation."""
        found = _fetch(
            self.conn,
            "SELECT * FROM pending_sends WHERE subscriber_id = ANY(%s::bigint[])"
            " ORDER BY created_at, id",
            sorted(subscriber_ids),
        )
        return [rows.send_of(r) for r in found]

    def subscriber_messages(
        self, subscriber_ids: Collection[int], limit: int | None = None
    ) -> list[Message]:
        """Messages to these subscribers, newest first (all of them when `limit` is None)."""
        found = _fetch(
            self.conn,
            "SELECT * FROM messages WHERE subscriber_id = ANY(%s::bigint[])"
            " ORDER BY sent_at DESC, id DESC LIMIT %s",
            sorted(subscriber_ids),
            limit,
        )
        return [rows.message_of(r) for r in found]

    def suppression_lifts(self, subscriber_id: int) -> list[SuppressionLift]:
        """Suppressions of one subscriber lifted through the API, oldest first."""
        found = _fetch(
            self.conn,
            "SELECT * FROM suppression_lifts WHERE subscriber_id = %s ORDER BY seq",
            subscriber_id,
        )
        return [rows.lift_of(r) for r in found]


class PeopleWrites:
    """Lifted suppressions and the rewrites of erasure."""

    conn: psycopg.Connection[Any]

    def add_suppression_lift(self, lift: SuppressionLift) -> None:
        """Record a lifted suppression."""
        values = rows.lift_values(lift)
        _many(
            self.conn,
            f"INSERT INTO suppression_lifts ({LIFT_COLUMNS})"
            f" VALUES ({', '.join(['%s'] * len(values))})",
            [values],
        )

    def clear_lift_notes(self, subscriber_ids: Collection[int]) -> int:
        """Forget the free-text notes of these subscribers' lifts; how many had one."""
        with self.conn.cursor() as cursor:
            cursor.execute(
                "UPDATE suppression_lifts SET note = NULL"
                " WHERE subscriber_id = ANY(%s::bigint[]) AND note IS NOT NULL",
                (sorted(subscriber_ids),),
            )
            return cursor.rowcount

    def rewrite_events(self, events: Sequence[StoredEvent]) -> None:
        """Overwrite who and what stored events name (by seq), renaming changed client ids."""
        _many(
            self.conn,
            "UPDATE events SET email = %s, client_id = %s, fields = %s, groups = %s, data = %s"
            " WHERE seq = %s",
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
        _many(
            self.conn,
            "UPDATE event_ids SET id = %s WHERE seq = %s AND id <> %s",
            [(e.id, e.seq, e.id) for e in events if e.id is not None],
        )

    def rewrite_sends(self, sends: Sequence[PendingSend]) -> None:
        """Overwrite the email, trigger event, overrides and last error of sends."""
        _many(
            self.conn,
            "UPDATE pending_sends SET email = %s, trigger_event = %s, overrides = %s,"
            " last_error = %s WHERE id = %s",
            [
                (s.email, rows.dumps(s.trigger_event), rows.dumps(s.overrides), s.last_error, s.id)
                for s in sends
            ],
        )

    def rewrite_messages(self, messages: Sequence[Message]) -> None:
        """Overwrite the recipient, subject, bodies and headers of messages."""
        _many(
            self.conn,
            "UPDATE messages SET to_address = %s, subject = %s, html = %s, text = %s,"
            " headers = %s WHERE id = %s",
            [(m.to, m.subject, m.html, m.text, rows.dumps(m.headers), m.id) for m in messages],
        )

    def rewrite_message_events(self, events: Sequence[MessageEvent]) -> None:
        """Overwrite the url of provider events, found by provider and event id."""
        _many(
            self.conn,
            "UPDATE message_events SET url = %s WHERE provider = %s AND provider_event_id = %s",
            [(e.url, e.provider, e.provider_event_id) for e in events],
        )
