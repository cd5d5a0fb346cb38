"""The PostgreSQL store, for several runner replicas sharing one database (docs/scaling.md): a
pool of connections used from worker threads (one READ COMMITTED transaction per write, a read-only
snapshot per read), a writer thread group-committing ingests, and the versioned migrations of
migrations_pg/ applied at start-up under an advisory lock so replicas may start together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from runner.core.clock import Clock
from runner.core.records import IncomingEvent
from runner.core.store_options import DEFAULT_OPTIONS, StoreOptions
from runner.store.base import ReadTx, WriteTx
from runner.store.errors import StoreError, TransactionAborted
from runner.store.postgres_read import PgReadTx
from runner.store.postgres_session import (
    connection_kwargs,
    is_server_fault,
    session_setup,
    startup_error,
    unavailable,
)
from runner.store.postgres_write import PgWriteTx
from runner.store.versions import migration_files, refuse_unknown

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations_pg"
MIGRATION_LOCK = 0x7077_6D69  # "pwmi": one replica migrates at a time
POOL_SIZE = 8
MAX_GROUP = 256  # ingest calls committed together at most

_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED"
# A read sees one snapshot, like SQLite's read transaction; read-only REPEATABLE READ never
# fails with a serialization error.
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


@dataclass
class _Ingest:
    events: Sequence[IncomingEvent]
    done: Future[list[str]] = field(default_factory=Future)


_STOP = object()


def connect(conninfo: str, options: StoreOptions = DEFAULT_OPTIONS) -> psycopg.Connection[Any]:
    """A connection configured like the pool's but without lock and statement bounds: it
    runs the migrations, which may rewrite big tables and wait for other replicas'
    transactions to end. The idle bound holds."""
    unbounded = dataclasses.replace(options, lock_timeout=0, statement_timeout=0)
    conn = psycopg.connect(conninfo, **connection_kwargs(conninfo))
    try:
        session_setup(unbounded)(conn)
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: psycopg.Connection[Any], begin: str = _BEGIN_WRITE) -> Iterator[None]:
    """BEGIN, then COMMIT when the block returns or ROLLBACK when it raises.

    PostgreSQL turns COMMIT of a failed transaction into a silent ROLLBACK; a block that
    swallowed a database error is refused here (TransactionAborted) instead of reported done.
    """
    conn.execute(begin)
    try:
        yield
    except BaseException:
        if not conn.broken and conn.info.transaction_status is not TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        raise
    status = conn.info.transaction_status
    if status is not TransactionStatus.INTRANS:
        if status is TransactionStatus.INERROR:
            conn.execute("ROLLBACK")
        raise TransactionAborted("a statement failed and the transaction was rolled back")
    conn.execute("COMMIT")


def migrate(conn: psycopg.Connection[Any], clock: Clock, directory: Path = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded in schema_migrations, in one transaction each.

    Each transaction first takes MIGRATION_LOCK, so replicas starting together apply every
    file once; files are named `NNNN_name.sql`. Returns the versions applied now.
    """
    files = migration_files(directory)
    refuse_unknown(_recorded_versions(conn), files, "the PostgreSQL database")
    applied: list[int] = []
    for version, path in files.items():
        with transaction(conn):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
            ).fetchone()
            if done is not None:
                continue
            # Without parameters the simple query protocol runs the whole script at once.
            conn.execute(path.read_text(encoding="utf-8").encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (version, path.stem, clock.now()),
            )
            applied.append(version)
    return applied


def _recorded_versions(conn: psycopg.Connection[Any]) -> set[int]:
    with transaction(conn, _BEGIN_READ):
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return set()
        return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


@contextmanager
def _server_faults() -> Iterator[None]:
    """Server faults leave the block as StoreUnavailable (retry later), others as raised."""
    try:
        yield
    except psycopg.Error as error:
        if is_server_fault(error):
            raise unavailable(error) from error
        raise


def _failure(error: BaseException) -> BaseException:
    """What a caller sees of a failed transaction: server faults as StoreUnavailable (retry
    later), everything else as raised."""
    return unavailable(error) if is_server_fault(error) else error


class PostgresStore:
    """The `Store` over one PostgreSQL database, shared by any number of replicas."""

    def __init__(
        self,
        conninfo: str,
        clock: Clock,
        options: StoreOptions = DEFAULT_OPTIONS,
        *,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self.clock = clock
        self.transactions = 0  # committed ingest transactions (a group commit counts once)
        try:
            with connect(conninfo, options) as conn:
                self.migrated = migrate(conn, clock)
        except psycopg.OperationalError as error:  # no server, refused, timed out
            raise startup_error(error) from error
        # A connection the server closed (a session ended while this replica was stopped)
        # is found broken when it comes back and discarded by the pool, never reused.
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs=connection_kwargs(conninfo),
            configure=session_setup(options),
            open=True,
            name="postwright-store",
        )
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="store-ingest", daemon=True)
        self._thread.start()

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[str]:
        """Store received events atomically; group-committed with concurrent calls."""
        if self._closed:
            raise StoreError("the store is closed")
        item = _Ingest(list(events))
        self._queue.put(item)
        return await asyncio.wrap_future(item.done)

    async def write(self, work: Callable[[WriteTx], T]) -> T:
        """Run `work` in a worker thread inside one READ COMMITTED transaction."""
        if self._closed:
            raise StoreError("the store is closed")
        return await asyncio.to_thread(self._write, work)

    async def read(self, work: Callable[[ReadTx], T]) -> T:
        """Run `work` in a worker thread inside one read-only snapshot."""
        if self._closed:
            raise StoreError("the store is closed")
        return await asyncio.to_thread(self._read, work)

    async def drop_old_copies(self) -> bool:
        """Nothing to do at this level: old row versions are PostgreSQL's to reclaim (VACUUM),
        and its files, WAL archives and backups are the operator's (docs/subscribers.md)."""
        if self._closed:
            raise StoreError("the store is closed")
        return True

    async def close(self) -> None:
        """Finish queued ingests, stop the writer thread and close the pool."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._pool.close)

    def _write(self, work: Callable[[WriteTx], T]) -> T:
        with _server_faults(), self._pool.connection() as conn, transaction(conn):
            return work(PgWriteTx(conn))

    def _read(self, work: Callable[[ReadTx], T]) -> T:
        with _server_faults(), self._pool.connection() as conn, transaction(conn, _BEGIN_READ):
            return work(PgReadTx(conn))

    # The ingest thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                stop = False
                while len(batch) < MAX_GROUP:  # take whatever else is already waiting
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        break
                    batch.append(item)
                self._commit_group([item for item in batch if isinstance(item, _Ingest)])
                if stop:
                    return
        finally:
            self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Ingest) and item.done.set_running_or_notify_cancel():
                item.done.set_exception(StoreError("the store is closed"))

    def _commit_group(self, group: list[_Ingest]) -> None:
        calls = [item for item in group if item.done.set_running_or_notify_cancel()]
        if not calls:
            return
        try:
            with self._pool.connection() as conn, transaction(conn):
                tx = PgWriteTx(conn)
                tx.lock_events()
                received_at = self.clock.now()  # one trigger time per commit (docs/events.md)
                outcomes = tx.ingest_group([item.events for item in calls], received_at)
        except BaseException as error:
            for item in calls:
                item.done.set_exception(_failure(error))
            return
        self.transactions += 1
        for item, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                item.done.set_exception(outcome)
            else:
                item.done.set_result(outcome)
