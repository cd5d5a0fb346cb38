"""The queries of the subscribers API and of erasure, written once for both stores and
mixed into their read and write transactions."""

from __future__ import annotations

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
from runner.store.rows import dumps, opt_dumps, subscriber_page_sql
from runner.store.sql_read import SqlReadTx
from runner.store.write_queries import WriteQueries


class PeopleReads(SqlReadTx):
    """Subscriber listing, a person's sends, messages and lifts, and erasure lookups."""

    def list_subscribers(self, query: SubscriberQuery) -> list[Subscriber]:
        """Live subscribers with id > query.after_id matching its filters, by id."""
        sql, args = subscriber_page_sql(query, self.dialect.positional, self.dialect.in_group)
        subscriber_of = self.dialect.codec.subscriber_of
        return [subscriber_of(r) for r in self._all(sql, *args)]

    def events_of(self, email: str) -> list[StoredEvent]:
        """Every event stored under this normalised email, by seq."""
        found = self._all(self.reads.events_of, normalise_email(email))
        return [self.dialect.codec.event_of(r) for r in found]

    def subscriber_sends(self, subscriber_ids: Collection[int]) -> list[PendingSend]:
        """Sends of these subscribers in any status, by creation."""
        found: list[PendingSend] = []
        for batch in self.dialect.batches(sorted(subscriber_ids)):
            test, args = self.dialect.one_of("subscriber_id", batch, "bigint")
            selected = self._all(f"SELECT * FROM pending_sends WHERE {test}", *args)
            found.extend(self.dialect.codec.send_of(r) for r in selected)
        return sorted(found, key=lambda send: (send.created_at, send.id))

    def subscriber_messages(
        self, subscriber_ids: Collection[int], limit: int | None = None
    ) -> list[Message]:
        """Messages to these subscribers, newest first (all of them when `limit` is None)."""
        found: list[Message] = []
        for batch in self.dialect.batches(sorted(subscriber_ids)):
            test, args = self.dialect.one_of("subscriber_id", batch, "bigint")
            sql = f"SELECT * FROM messages WHERE {test} ORDER BY sent_at DESC, id DESC"
            if limit is not None:
                sql += f" LIMIT {self.dialect.positional}"
                args.append(limit)
            found.extend(self.dialect.codec.message_of(r) for r in self._all(sql, *args))
        found.sort(key=lambda message: (message.sent_at, message.id), reverse=True)
        return found if limit is None else found[:limit]

    def suppression_lifts(self, subscriber_id: int) -> list[SuppressionLift]:
        """Suppressions of one subscriber lifted through the API, oldest first."""
        found = self._all(self.reads.suppression_lifts, subscriber_id)
        return [self.dialect.codec.lift_of(r) for r in found]


class PeopleWrites(SqlReadTx):
    """Lifted suppressions and the rewrites of erasure."""

    writes: WriteQueries

    def add_suppression_lift(self, lift: SuppressionLift) -> None:
        """Record a lifted suppression."""
        self._run(self.writes.add_suppression_lift, self.dialect.codec.lift_values(lift))

    def clear_lift_notes(self, subscriber_ids: Collection[int]) -> int:
        """Forget the free-text notes of these subscribers' lifts; how many had one."""
        cleared = 0
        for batch in self.dialect.batches(sorted(subscriber_ids)):
            test, args = self.dialect.one_of("subscriber_id", batch, "bigint")
            cleared += self._run(
                f"UPDATE suppression_lifts SET note = NULL WHERE {test} AND note IS NOT NULL", args
            )
        return cleared

    def rewrite_events(self, events: Sequence[StoredEvent]) -> None:
        """Overwrite who and what stored events name (by seq), renaming changed client ids."""
        self._many(
            self.writes.rewrite_events,
            [
                (
                    normalise_email(e.email),
                    e.id,
                    opt_dumps(e.fields),
                    opt_dumps(e.groups),
                    dumps(e.data),
                    e.seq,
                )
                for e in events
            ],
        )
        self._many(
            self.writes.rename_event_ids,
            [(e.id, e.seq, e.id) for e in events if e.id is not None],
        )

    def rewrite_sends(self, sends: Sequence[PendingSend]) -> None:
        """Overwrite the email, trigger event, overrides and last error of sends."""
        self._many(
            self.writes.rewrite_sends,
            [
                (s.email, dumps(s.trigger_event), dumps(s.overrides), s.last_error, s.id)
                for s in sends
            ],
        )

    def rewrite_messages(self, messages: Sequence[Message]) -> None:
        """Overwrite the recipient, subject, bodies and headers of messages."""
        self._many(
            self.writes.rewrite_messages,
            [(m.to, m.subject, m.html, m.text, dumps(m.headers), m.id) for m in messages],
        )

    def rewrite_message_events(self, events: Sequence[MessageEvent]) -> None:
        """Overwrite the url of provider events, found by provider and event id."""
        self._many(
            self.writes.rewrite_message_events,
            [(e.url, e.provider, e.provider_event_id) for e in events],
        )
