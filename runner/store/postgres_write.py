"""`WriteTx` over a PostgreSQL connection in a READ COMMITTED transaction; state changes of
sends are guarded in SQL, and claims skip rows another replica is claiming (SKIP LOCKED).

PostgreSQL aborts the whole transaction when a statement fails, where SQLite only undoes the
statement; so expected failures (a duplicate email, an unknown message) are detected with
guarded statements instead of caught errors, and the transaction stays usable as in SQLite.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import psycopg
from psycopg.pq import TransactionStatus

from runner.core.records import (
    IncomingEvent,
    MessageEvent,
    Subscriber,
    normalise_email,
)
from runner.store import postgres_rows as rows
from runner.store.errors import StoreError, TransactionAborted
from runner.store.postgres_claims import PgClaimsTx
from runner.store.postgres_rows import POSTGRES
from runner.store.postgres_session import is_server_fault, unavailable
from runner.store.rows import SUBSCRIBER_COLUMNS
from runner.store.sql_fanout import ENTRIES, HELD, SENDS
from runner.store.sql_people import PeopleWrites
from runner.store.sql_write import SqlWriteTx
from runner.store.write_queries import WriteQueries

# Held (transaction-scoped) by every ingest: client events get their seq and commit in the
# same order across replicas, so the processor never sees a smaller seq appear later, and
# concurrent ingests of one id cannot both insert it.
EVENTS_LOCK = 0x7077_6576  # "pwev"
LIFECYCLE_LOCK = 0x7077_6C63  # "pwlc": applying files, scheduled starts, stop_at stops
ENGINE_LOCK = 0x7077_656E  # "pwen": event processing and scheduler ticks

_NEXT_SEQS = (
    "SELECT nextval(pg_get_serial_sequence('events', 'seq')) AS seq FROM generate_series(1, %s)"
)
_WRITES = WriteQueries(POSTGRES)

# A firing's page in one statement: chosen once, then its entries and sends inserted.
_PAGE = (
    "WITH page AS (SELECT id, email, strpos(fields, {held}) > 0 AS held FROM subscribers"
    " WHERE {where} ORDER BY id LIMIT %s),"
    " entered AS ({entries}),"
    " sent AS ({sends})"
    " SELECT count(*) AS n, max(id) AS last, count(*) FILTER (WHERE held) AS held FROM page"
)
_PAGE_ENTRIES = ENTRIES.format(mark="%s", page="page", fresh="NOT page.held")

# Savepoint names: unique within the process, so nested scopes never share one.
_SAVEPOINTS = itertools.count(1)


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


class PgWriteTx(PgClaimsTx, PeopleWrites, SqlWriteTx):
    """Reads and writes inside one READ COMMITTED transaction (the statements both stores
    share come from runner.store.sql_write)."""

    writes = _WRITES
    send_id_sql = "lpad(to_hex(%s::bigint), 12, '0') || lpad(to_hex(%s::bigint + page.id), 16, '0')"
    position = "strpos"

    def _enter_page(
        self,
        where: str,
        where_args: list[object],
        send_sql: str,
        send_args: list[object],
        entry_args: list[object],
    ) -> tuple[int, int | None, int]:
        sends = SENDS.format(columns=send_sql, page="page", fresh="NOT page.held")
        sql = _PAGE.format(held=HELD, where=where, entries=_PAGE_ENTRIES, sends=sends)
        row = self._one(sql, *where_args, *entry_args, *send_args)
        assert row is not None
        return int(row["n"]), row["last"], int(row["held"])

    def lock_events(self) -> None:
        """Take EVENTS_LOCK until the transaction ends."""
        self._run("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))

    def _insert_events(self, events: Sequence[IncomingEvent], received_at: datetime) -> None:
        allocated = self._all(_NEXT_SEQS, len(events))
        seqs = sorted(int(row["seq"]) for row in allocated)
        self._event_rows(seqs, events, received_at)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the block's writes when it raises (the exception goes on); keep them otherwise."""
        name = f"pw_savepoint_{next(_SAVEPOINTS)}"
        self._run(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException as error:
            if is_server_fault(error):  # a timeout or a lost session, not this block's data
                raise unavailable(error) from error
            if not self._in_transaction():
                raise TransactionAborted(f"the transaction was lost: {error}") from error
            try:
                self._run(f"ROLLBACK TO SAVEPOINT {name}")
                self._run(f"RELEASE SAVEPOINT {name}")
            except psycopg.Error as failed:
                raise TransactionAborted(f"cannot roll back to a savepoint: {failed}") from error
            raise
        if self.conn.info.transaction_status is TransactionStatus.INERROR:
            # A statement of the block failed and the block swallowed the error: PostgreSQL
            # cannot undo that statement alone, so the whole block is undone and reported.
            self._run(f"ROLLBACK TO SAVEPOINT {name}")
            self._run(f"RELEASE SAVEPOINT {name}")
            raise StoreError("a statement failed inside a savepoint block; the block was undone")
        self._run(f"RELEASE SAVEPOINT {name}")

    def _in_transaction(self) -> bool:
        status = self.conn.info.transaction_status
        return not self.conn.broken and status in (
            TransactionStatus.INTRANS,
            TransactionStatus.INERROR,
        )

    def save_subscriber(self, subscriber: Subscriber) -> Subscriber:
        """Insert (id None) or update a subscriber; returns it with its id and normalised email."""
        email = normalise_email(subscriber.email)
        values = rows.CODEC.subscriber_values(subscriber, email)
        if subscriber.id is None:
            row = self._one(
                f"INSERT INTO subscribers ({SUBSCRIBER_COLUMNS})"
                f" VALUES ({_placeholders(len(values))})"
                " ON CONFLICT (email) DO NOTHING RETURNING id",
                *values,
            )
            if row is None:
                raise StoreError(f"subscriber {email!r} cannot be saved: the email is taken")
            return dataclasses.replace(subscriber, id=row["id"], email=email)
        changed = self._run(
            f"UPDATE subscribers SET ({SUBSCRIBER_COLUMNS}) = ({_placeholders(len(values))})"
            " WHERE id = %s"
            " AND NOT EXISTS (SELECT 1 FROM subscribers WHERE email = %s AND id <> %s)",
            (*values, subscriber.id, email, subscriber.id),
        )
        if changed != 1:
            if self._one("SELECT 1 FROM subscribers WHERE id = %s", subscriber.id) is None:
                raise StoreError(f"subscriber {subscriber.id} does not exist")
            raise StoreError(f"subscriber {email!r} cannot be saved: the email is taken")
        return dataclasses.replace(subscriber, email=email)

    def insert_message_event(self, event: MessageEvent) -> bool:
        """Store a provider event; False when its provider event id was seen before."""
        # Guarded rather than left to the foreign key: a violation would abort the transaction.
        inserted = self._run(
            "INSERT INTO message_events (provider, provider_event_id, message_id, type,"
            " occurred_at, received_at, url, bounce)"
            " SELECT %s, %s, %s, %s, %s, %s, %s, %s"
            " WHERE EXISTS (SELECT 1 FROM messages WHERE id = %s)"
            " ON CONFLICT (provider, provider_event_id) DO NOTHING",
            (
                event.provider,
                event.provider_event_id,
                event.message_id,
                event.type,
                rows.instant(event.occurred_at),
                rows.instant(event.received_at),
                event.url,
                event.bounce,
                event.message_id,
            ),
        )
        if inserted == 1:
            return True
        if self._one("SELECT 1 FROM messages WHERE id = %s", event.message_id) is None:
            raise StoreError(f"message {event.message_id!r} is not in the store")
        return False

    def purge_claims(self, prefix: str, before: datetime) -> int:
        """Forget claims of `prefix` older than `before`."""
        return self._run(
            "DELETE FROM once WHERE starts_with(key, %s) AND at < %s",
            (prefix, rows.instant(before)),
        )

    def lock_lifecycle(self) -> None:
        """Wait for LIFECYCLE_LOCK, held until this transaction ends; READ COMMITTED makes every
        later statement see what the previous holder committed."""
        self._run("SELECT pg_advisory_xact_lock(%s)", (LIFECYCLE_LOCK,))

    def lock_engine(self) -> None:
        """Wait for ENGINE_LOCK, held until this transaction ends: one replica processes
        events (in seq order) or ticks the scheduler at a time."""
        self._run("SELECT pg_advisory_xact_lock(%s)", (ENGINE_LOCK,))

    def try_lock_engine(self) -> bool:
        """Take ENGINE_LOCK if nobody holds it; False instead of waiting."""
        row = self._one("SELECT pg_try_advisory_xact_lock(%s) AS taken", ENGINE_LOCK)
        return row is not None and bool(row["taken"])
