"""`WriteTx` over the writer's SQLite connection; state changes of sends are guarded in SQL."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from runner.core.records import (
    IncomingEvent,
    MessageEvent,
    Subscriber,
    normalise_email,
)
from runner.store import sqlite_rows as rows
from runner.store.errors import StoreError, TransactionAborted
from runner.store.rows import SUBSCRIBER_COLUMNS
from runner.store.sql_fanout import ENTRIES, HELD, SENDS
from runner.store.sql_people import PeopleWrites
from runner.store.sql_write import SqlWriteTx
from runner.store.sqlite_claims import SqliteClaimsTx
from runner.store.sqlite_faults import is_store_fault, unavailable
from runner.store.sqlite_rows import SQLITE, marks
from runner.store.write_queries import WriteQueries

_LAST_SEQ = (
    "SELECT MAX(IFNULL((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
    " IFNULL((SELECT MAX(seq) FROM events), 0)) AS last"
)
_WRITES = WriteQueries(SQLITE)
# Constant texts, so sqlite3's statement cache finds them without building them per save;
# the id of an insert is its rowid (INTEGER PRIMARY KEY), read without RETURNING.
_SUBSCRIBER_MARKS = marks(len(SUBSCRIBER_COLUMNS.split(",")))
_INSERT_SUBSCRIBER = f"INSERT INTO subscribers ({SUBSCRIBER_COLUMNS}) VALUES ({_SUBSCRIBER_MARKS})"
_UPDATE_SUBSCRIBER = (
    f"UPDATE subscribers SET ({SUBSCRIBER_COLUMNS}) = ({_SUBSCRIBER_MARKS}) WHERE id = ?"
)

# A firing's page, chosen once and read by the statements entering it (this connection's own).
_PAGE_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS fanout_page"
    " (id INTEGER PRIMARY KEY, email TEXT NOT NULL, held INTEGER NOT NULL)"
)
_PAGE_ENTRIES = ENTRIES.format(mark="?", page="temp.fanout_page", fresh="page.held = 0")

# Savepoint names: unique within the process, so nested scopes never share one.
_SAVEPOINTS = itertools.count(1)


class SqliteWriteTx(SqliteClaimsTx, PeopleWrites, SqlWriteTx):
    """Reads and writes inside one `BEGIN IMMEDIATE` transaction of the writer thread (the
    statements both stores share come from runner.store.sql_write)."""

    writes = _WRITES
    send_id_sql = "printf('%012x%016x', ?, ? + page.id)"
    position = "instr"

    def _enter_page(
        self,
        where: str,
        where_args: list[object],
        send_sql: str,
        send_args: list[object],
        entry_args: list[object],
    ) -> tuple[int, int | None, int]:
        # SQLite has no INSERT in a WITH: the page goes to a temporary table, so the
        # subscribers are scanned and tested once for both inserts.
        self.db.execute(_PAGE_TABLE)
        self.db.execute("DELETE FROM temp.fanout_page")
        self.db.execute(
            "INSERT INTO temp.fanout_page (id, email, held)"
            f" SELECT id, email, instr(fields, {HELD}) > 0 FROM subscribers WHERE {where}"
            " ORDER BY id LIMIT ?",
            where_args,
        )
        row = self._one(
            "SELECT count(*) AS n, max(id) AS last, total(held) AS held FROM temp.fanout_page"
        )
        assert row is not None
        self.db.execute(_PAGE_ENTRIES, entry_args)
        sends = SENDS.format(columns=send_sql, page="temp.fanout_page", fresh="page.held = 0")
        self.db.execute(sends, send_args)
        self.db.execute("DELETE FROM temp.fanout_page")  # no subscriber data stays behind
        return int(row["n"]), row["last"], int(row["held"])

    def _insert_events(self, events: Sequence[IncomingEvent], received_at: datetime) -> None:
        # The writer holds the database (BEGIN IMMEDIATE), so the next sequence numbers
        # are ours to assign; AUTOINCREMENT keeps them above any ever used.
        row = self._one(_LAST_SEQ)
        first = (row["last"] if row is not None else 0) + 1
        self._event_rows(range(first, first + len(events)), events, received_at)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the block's writes when it raises (the exception goes on); keep them otherwise."""
        name = f"pw_savepoint_{next(_SAVEPOINTS)}"
        self.db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException as error:
            # Some errors (disk full, I/O) make SQLite end the whole transaction; statements
            # run after that would autocommit one by one, so the caller must stop.
            if not self.db.in_transaction:
                raise TransactionAborted(f"the transaction was lost: {error}") from error
            if is_store_fault(error):  # the disk or the file failed, not this block's data
                raise unavailable(error) from error
            try:
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
            except sqlite3.Error as failed:
                raise TransactionAborted(f"cannot roll back to a savepoint: {failed}") from error
            raise
        self.db.execute(f"RELEASE {name}")

    def save_subscriber(self, subscriber: Subscriber) -> Subscriber:
        """Insert (id None) or update a subscriber; returns it with its id and normalised email."""
        email = normalise_email(subscriber.email)
        values = rows.CODEC.subscriber_values(subscriber, email)
        try:
            if subscriber.id is None:
                ident = self.db.execute(_INSERT_SUBSCRIBER, values).lastrowid
                return dataclasses.replace(subscriber, id=ident, email=email)
            changed = self.db.execute(_UPDATE_SUBSCRIBER, (*values, subscriber.id)).rowcount
        except sqlite3.IntegrityError as error:
            raise StoreError(f"subscriber {email!r} cannot be saved: {error}") from None
        if changed != 1:
            raise StoreError(f"subscriber {subscriber.id} does not exist")
        return dataclasses.replace(subscriber, email=email)

    def insert_message_event(self, event: MessageEvent) -> bool:
        """Store a provider event; False when its provider event id was seen before."""
        try:
            cursor = self.db.execute(
                "INSERT INTO message_events (provider, provider_event_id, message_id, type,"
                " occurred_at, received_at, url, bounce) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, provider_event_id) DO NOTHING",
                (
                    event.provider,
                    event.provider_event_id,
                    event.message_id,
                    event.type,
                    rows.time_text(event.occurred_at),
                    rows.time_text(event.received_at),
                    event.url,
                    event.bounce,
                ),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"message {event.message_id!r} is not in the store") from None
        return cursor.rowcount == 1

    def purge_claims(self, prefix: str, before: datetime) -> int:
        """Forget claims of `prefix` older than `before`."""
        return self.db.execute(
            "DELETE FROM once WHERE substr(key, 1, ?) = ? AND at < ?",
            (len(prefix), prefix, rows.time_text(before)),
        ).rowcount

    def lock_lifecycle(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def lock_engine(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def try_lock_engine(self) -> bool:
        """Always True: BEGIN IMMEDIATE already made this the only writer."""
        return True
