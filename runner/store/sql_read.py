"""`ReadTx` written once for both stores, over two primitives each store supplies."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime

from runner.core.prefilter import InGroup, Prefilter
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
from runner.store.base import Stats
from runner.store.dialect import Dialect
from runner.store.fanout import SweepRow
from runner.store.read_queries import ReadQueries
from runner.store.rows import Row, stats_of

# The columns of a store's message-stats query, named like Stats fields.
MESSAGE_COUNTS = (
    "delivered",
    "opened",
    "clicked",
    "unique_openers",
    "unique_clickers",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "unsubscribed",
)


class SqlReadTx:
    """Reads inside one transaction; a store's subclass names its dialect, its rendered
    queries, its message-stats query and how a statement runs on its connection (the
    primitives below)."""

    dialect: Dialect
    reads: ReadQueries
    message_stats: str  # one row of MESSAGE_COUNTS for the automation bound to its placeholder

    def _one(self, sql: str, *args: object) -> Row | None:
        raise NotImplementedError

    def _all(self, sql: str, *args: object) -> Sequence[Row]:
        raise NotImplementedError

    def _run(self, sql: str, args: Sequence[object] | Mapping[str, object] = ()) -> int:
        """Execute a statement; the number of rows it changed."""
        raise NotImplementedError

    def _many(self, sql: str, values: Sequence[Sequence[object]]) -> None:
        """Execute a statement once per tuple of `values`."""
        raise NotImplementedError

    def _insert_rows(self, sql: str, values: Sequence[Sequence[object]]) -> None:
        """Run a one-row `INSERT ... VALUES (...) [ON CONFLICT ...]` for every tuple of
        `values`; a store may send many rows per statement instead."""
        self._many(sql, values)

    def automations(self) -> list[AppliedAutomation]:
        """Every applied automation, deleted ones included, by id."""
        automation_of = self.dialect.codec.automation_of
        return [automation_of(r) for r in self._all(self.reads.automations)]

    def automation(self, automation_id: str) -> AppliedAutomation | None:
        """One applied automation."""
        row = self._one(self.reads.automation, automation_id)
        return None if row is None else self.dialect.codec.automation_of(row)

    def history(self, automation_id: str) -> list[HistoryEntry]:
        """Applied changes of one automation, oldest first."""
        history_of = self.dialect.codec.history_of
        return [history_of(r) for r in self._all(self.reads.history, automation_id)]

    def status_changes(self) -> list[HistoryEntry]:
        """Every history entry of kind "status", oldest first."""
        history_of = self.dialect.codec.history_of
        return [history_of(r) for r in self._all(self.reads.status_changes)]

    def subscriber(self, email: str) -> Subscriber | None:
        """A subscriber by normalised email."""
        row = self._one(self.reads.subscriber, normalise_email(email))
        return None if row is None else self.dialect.codec.subscriber_of(row)

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """A subscriber by id."""
        row = self._one(self.reads.subscriber_by_id, subscriber_id)
        return None if row is None else self.dialect.codec.subscriber_of(row)

    def subscribers_by_ids(self, subscriber_ids: Collection[int]) -> dict[int, Subscriber]:
        """The subscribers of `subscriber_ids` that exist, by id (one read per batch of ids)."""
        found = self._subscribers_where("id", sorted(set(subscriber_ids)), "bigint")
        return {s.id: s for s in found if s.id is not None}

    def subscribers_by_emails(self, emails: Collection[str]) -> dict[str, Subscriber]:
        """The subscribers of the normalised `emails` that exist, by email (one read per
        batch of emails, on the email's unique index)."""
        return {s.email: s for s in self._subscribers_where("email", sorted(set(emails)))}

    def _subscribers_where(
        self, column: str, values: Sequence[object], sql_type: str = "text"
    ) -> Iterator[Subscriber]:
        """The subscribers whose `column` is one of `values`, a batch of values per read."""
        subscriber_of = self.dialect.codec.subscriber_of
        for batch in self.dialect.batches(values):
            test, args = self.dialect.one_of(column, batch, sql_type)
            for row in self._all(self.reads.subscribers_where + test, *args):
                yield subscriber_of(row)

    def subscribers(self, after_id: int, limit: int) -> list[Subscriber]:
        """Live (not deleted) subscribers with id > after_id, by id."""
        subscriber_of = self.dialect.codec.subscriber_of
        return [subscriber_of(r) for r in self._all(self.reads.subscribers, after_id, limit)]

    def sweep_page(
        self, after_id: int, until_id: int, limit: int, tests: Sequence[Prefilter] = ()
    ) -> list[Subscriber]:
        """Live, unsuppressed subscribers with after_id < id <= until_id passing every test,
        by id, at most `limit`: a page of a firing's sweep."""
        sql, args = self._sweep_sql("*", after_id, until_id, limit, tests)
        subscriber_of = self.dialect.codec.subscriber_of
        return [subscriber_of(r) for r in self._all(sql, *args)]

    def sweep_rows(
        self, after_id: int, until_id: int, limit: int, tests: Sequence[Prefilter] = ()
    ) -> list[SweepRow]:
        """`sweep_page` as undecoded rows: id, email, fields and groups (JSON text)."""
        sql, args = self._sweep_sql("id, email, fields, groups", after_id, until_id, limit, tests)
        return [(r["id"], r["email"], r["fields"], r["groups"]) for r in self._all(sql, *args)]

    def exact_field_tests(self) -> bool:
        """Whether this store's field tests match exactly where the audience check would,
        except on fields holding an escaped NUL (`\\u0000`), see `decided` in prefilter."""
        return self.dialect.exact_fields

    def _sweep_sql(
        self, columns: str, after_id: int, until_id: int, limit: int, tests: Sequence[Prefilter]
    ) -> tuple[str, list[object]]:
        where, args = self._sweep_where(after_id, until_id, tests)
        sql = f"SELECT {columns} FROM subscribers WHERE {where}"
        return f"{sql} ORDER BY id LIMIT {self.dialect.positional}", [*args, limit]

    def _sweep_where(
        self, after_id: int, until_id: int, tests: Sequence[Prefilter]
    ) -> tuple[str, list[object]]:
        """The test of a sweep's subscribers (live, unsuppressed, after_id < id <= until_id,
        passing `tests`) and its arguments."""
        mark = self.dialect.positional
        sql = (
            f"subscribers.id > {mark} AND subscribers.id <= {mark}"
            " AND subscribers.deleted_at IS NULL AND subscribers.suppressed IS NULL"
        )
        args: list[object] = [after_id, until_id]
        for test in tests:
            if isinstance(test, InGroup):
                sql += f" AND {self.dialect.in_group}"
                args.append(test.name)
                continue
            marks = ", ".join([mark] * len(test.values))
            dotted, commas = ".".join(test.path), ",".join(test.path)
            sql += " AND " + self.dialect.field_in.format(dotted=dotted, commas=commas, marks=marks)
            args.extend(test.values)
        return sql, args

    def last_subscriber_id(self) -> int:
        """The highest subscriber id (0 without subscribers)."""
        row = self._one("SELECT max(id) AS top FROM subscribers")
        return 0 if row is None or row["top"] is None else int(row["top"])

    def pending_send(self, send_id: str) -> PendingSend | None:
        """One pending send by id, whatever its status."""
        row = self._one(self.reads.pending_send, send_id)
        return None if row is None else self.dialect.codec.send_of(row)

    def pending_sends(
        self, automation_id: str, statuses: Collection[SendStatus], limit: int = 100
    ) -> list[PendingSend]:
        """Sends of one automation in the given statuses, by due time."""
        in_statuses, wanted = self.dialect.one_of("status", [SendStatus(s).value for s in statuses])
        mark = self.dialect.positional
        found = self._all(
            f"SELECT * FROM pending_sends WHERE automation_id = {mark} AND {in_statuses}"
            f" ORDER BY due_at, id LIMIT {mark}",
            automation_id,
            *wanted,
            limit,
        )
        return [self.dialect.codec.send_of(r) for r in found]

    def active_sends(
        self, subscriber_id: int, automation_id: str | None = None
    ) -> list[PendingSend]:
        """PENDING and CLAIMED sends of a subscriber (optionally of one automation)."""
        sql = self.reads.active_sends
        args: list[object] = [subscriber_id]
        if automation_id is not None:
            sql += self.reads.and_automation
            args.append(automation_id)
        send_of = self.dialect.codec.send_of
        return [send_of(r) for r in self._all(sql + " ORDER BY due_at, id", *args)]

    def entry(self, automation_id: str, subscriber_id: int) -> Entry | None:
        """Retrigger memory of one subscriber in one automation."""
        row = self._one(self.reads.entry, automation_id, subscriber_id)
        return None if row is None else self.dialect.codec.entry_of(row)

    def events_after(
        self, email: str, types: Collection[str], after: datetime
    ) -> list[StoredEvent]:
        """Events of a subscriber of the given types received strictly after `after`, by seq."""
        names = list(types)
        if not names:
            return []
        of_types, wanted = self.dialect.one_of("type", names)
        mark = self.dialect.positional
        found = self._all(
            f"SELECT * FROM events WHERE email = {mark} AND {of_types}"
            f" AND received_at > {mark} ORDER BY seq",
            normalise_email(email),
            *wanted,
            self.dialect.write_time(after),
        )
        return [self.dialect.codec.event_of(r) for r in found]

    def messages(self, limit: int, automation_id: str | None = None) -> list[Message]:
        """Messages, newest first."""
        if automation_id is None:
            found = self._all(self.reads.messages, limit)
        else:
            found = self._all(self.reads.automation_messages, automation_id, limit)
        return [self.dialect.codec.message_of(r) for r in found]

    def message(self, message_id: str) -> Message | None:
        """One message by our id."""
        row = self._one(self.reads.message, message_id)
        return None if row is None else self.dialect.codec.message_of(row)

    def message_by_provider_id(self, provider: str, provider_message_id: str) -> Message | None:
        """One message by the provider's id for it (the latest, should a provider reuse one)."""
        row = self._one(self.reads.message_by_provider_id, provider, provider_message_id)
        return None if row is None else self.dialect.codec.message_of(row)

    def message_events(self, message_id: str) -> list[MessageEvent]:
        """Provider events of one message, in receipt order."""
        message_event_of = self.dialect.codec.message_event_of
        return [message_event_of(r) for r in self._all(self.reads.message_events, message_id)]

    def messages_sent_between(
        self, automation_id: str, after: datetime, until: datetime
    ) -> list[Message]:
        """Messages of an automation sent in (after, until], oldest first."""
        write_time = self.dialect.write_time
        found = self._all(
            self.reads.messages_sent_between, automation_id, write_time(after), write_time(until)
        )
        return [self.dialect.codec.message_of(r) for r in found]

    def stats(self, automation_id: str) -> Stats:
        """Counts of one automation, computed in SQL."""
        triggered = self._one(self.reads.triggered, automation_id)
        sends = [
            (row["status"], row["reason"], row["sends"])
            for row in self._all(self.reads.send_stats, automation_id)
        ]
        counts = self._one(self.message_stats, automation_id)
        assert counts is not None  # an aggregate always answers one row
        return stats_of(
            triggered["triggered"] if triggered is not None else 0,
            sends,
            {name: counts[name] for name in MESSAGE_COUNTS},
        )

    def queue_depth(self) -> int:
        """PENDING and CLAIMED sends, over every automation."""
        row = self._one(self.reads.queue_depth)
        return 0 if row is None else int(row["n"])

    def meta(self, key: str) -> str | None:
        """A runner-wide value."""
        row = self._one(self.reads.meta, key)
        return None if row is None else str(row["value"])

    def failed_events(self, limit: int) -> list[StoredEvent]:
        """Events whose processing failed, newest first."""
        event_of = self.dialect.codec.event_of
        return [event_of(r) for r in self._all(self.reads.failed_events, limit)]

    def last_event_seq(self) -> int:
        """The highest event seq committed so far (0 when there is none)."""
        row = self._one(self.reads.last_event_seq)
        return 0 if row is None else int(row["last"])

    def has_unprocessed(self, through: int) -> bool:
        """Whether an event with seq <= `through` still waits (uses events_unprocessed)."""
        return self._one(self.reads.has_unprocessed, through) is not None

    def unprocessed_count(self) -> int:
        """How many events wait to be processed (counted on events_unprocessed)."""
        row = self._one(self.reads.unprocessed_count)
        return 0 if row is None else int(row["n"])

    def event_by_id(self, client_id: str) -> StoredEvent | None:
        """The event received with this client id (while the id is remembered)."""
        row = self._one(self.reads.event_by_id, client_id)
        return None if row is None else self.dialect.codec.event_of(row)
