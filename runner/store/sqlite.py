"""The SQLite store: one writer thread draining a queue of work (ingests are group-committed),
a small pool of reader connections, and versioned migrations applied at start-up.

The asyncio event loop never touches a connection: writes wait on a future the writer thread
resolves after COMMIT returns, reads run in worker threads (asyncio.to_thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from runner.core.clock import Clock
from runner.core.records import IncomingEvent
from runner.core.store_options import DEFAULT_OPTIONS, StoreOptions
from runner.store.base import ReadTx, WriteTx
from runner.store.errors import StoreError
from runner.store.sqlite_faults import is_read_fault, is_store_fault, unavailable
from runner.store.sqlite_open import connect, open_writer, transaction
from runner.store.sqlite_read import SqliteReadTx
from runner.store.sqlite_write import SqliteWriteTx

T = TypeVar("T")

READERS = 4
MAX_GROUP = 256  # ingest calls committed together at most


@dataclass
class _Ingest:
    """An ingest call; its caller awaits `waiter` (a future of its own loop), which the writer
    resolves through that loop: one wake-up answers a whole group commit."""

    events: Sequence[IncomingEvent]
    waiter: asyncio.Future[list[str]]


def _answer(replies: Sequence[tuple[_Ingest, Any]]) -> None:
    """Resolve ingest calls (with their result, or the exception raised) from the writer."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Ingest, Any]]] = {}
    for item, outcome in replies:
        by_loop.setdefault(item.waiter.get_loop(), []).append((item, outcome))
    for loop, mine in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody is waiting
            loop.call_soon_threadsafe(_settle, mine)


def _settle(replies: list[tuple[_Ingest, Any]]) -> None:
    for item, outcome in replies:
        if item.waiter.done():  # cancelled while the group was committed
            continue
        if isinstance(outcome, BaseException):
            item.waiter.set_exception(outcome)
        else:
            item.waiter.set_result(outcome)


@dataclass
class _Write:
    work: Callable[[WriteTx], Any]
    done: Future[Any] = field(default_factory=Future)


_STOP = object()
_I = TypeVar("_I", _Ingest, _Write)


def _failure(error: BaseException) -> BaseException:
    """What a caller sees of a failed transaction: faults of the file or disk as
    StoreUnavailable (retry later), everything else as raised."""
    return unavailable(error) if is_store_fault(error) else error


class SqliteStore:
    """The `Store` over one SQLite file (single runner replica, docs/scaling.md)."""

    def __init__(self, path: Path, clock: Clock, options: StoreOptions = DEFAULT_OPTIONS) -> None:
        self.path = path
        self.clock = clock
        self.transactions = 0  # committed write transactions (a group commit counts once)
        self._writer, self.migrated = open_writer(
            path, clock, integrity_check=options.integrity_check
        )
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[str]:
        """Store received events atomically; group-committed with concurrent calls."""
        waiter: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        return await self._submit(_Ingest(list(events), waiter)).waiter

    async def write(self, work: Callable[[WriteTx], T]) -> T:
        """Run `work` in the writer thread inside BEGIN IMMEDIATE; commit when it returns."""
        item = self._submit(_Write(work))
        result: T = await asyncio.wrap_future(item.done)
        return result

    async def read(self, work: Callable[[ReadTx], T]) -> T:
        """Run `work` in a worker thread inside one read transaction (a consistent snapshot)."""
        if self._closed:
            raise StoreError("the store is closed")
        return await asyncio.to_thread(self._read, work)

    async def drop_old_copies(self) -> bool:
        """Fold the write-ahead log into the database and truncate it: old versions of changed
        pages live on in the log until then. False when readers kept it from finishing."""
        if self._closed:
            raise StoreError("the store is closed")
        return await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> bool:
        # Its own connection: the writer thread may be inside a transaction, and a TRUNCATE
        # checkpoint waits (busy_timeout) for writers and readers of older snapshots.
        db = connect(self.path)
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()
        return not busy

    async def close(self) -> None:
        """Finish queued work, stop the writer thread and close every connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        with self._lock:
            for db in self._opened:
                db.close()
            self._opened.clear()

    def _submit(self, item: _I) -> _I:
        if self._closed:
            raise StoreError("the store is closed")
        self._queue.put(item)
        return item

    def _read(self, work: Callable[[ReadTx], T]) -> T:
        db = self._reader()
        try:
            with transaction(db, "BEGIN"):
                return work(SqliteReadTx(db))
        except sqlite3.Error as error:
            if is_read_fault(error):  # a fault of the file, as for writes
                raise unavailable(error) from error
            raise
        finally:
            self._readers.put(db)

    def _reader(self) -> sqlite3.Connection:
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._opened) < READERS:
                db = connect(self.path, readonly=True)
                self._opened.append(db)
                return db
        return self._readers.get()

    # The writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                while len(batch) < MAX_GROUP:  # take whatever else is already waiting
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self._handle(batch):
                    return
        finally:
            self._writer.close()
            self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        # Work queued in the instant between close() and the stop marker is refused, not lost
        # silently: its caller sees StoreError.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Ingest):
                _answer([(item, StoreError("the store is closed"))])
            elif isinstance(item, _Write) and item.done.set_running_or_notify_cancel():
                item.done.set_exception(StoreError("the store is closed"))

    def _handle(self, batch: list[object]) -> bool:
        """Run a batch as group commits: its ingests first, then its writes; True on stop.

        Items waiting together have no order between them, so the ingests go first (a
        request waiting for its 202 never waits behind engine work), and the writes
        share one transaction, each in a savepoint: one commit (one fsync) for many.
        """
        batch.sort(key=lambda item: not isinstance(item, _Ingest))
        self._commit_group([item for item in batch if isinstance(item, _Ingest)])
        writes: list[_Write] = []
        for item in batch:
            if isinstance(item, _Write):
                writes.append(item)
            elif not isinstance(item, _Ingest):  # the stop marker
                self._run_writes(writes)
                return True
        self._run_writes(writes)
        return False

    def _run_writes(self, items: list[_Write]) -> None:
        live = [item for item in items if item.done.set_running_or_notify_cancel()]
        if not live:
            return
        outcomes: list[tuple[bool, Any]] = []
        try:
            with transaction(self._writer):
                tx = SqliteWriteTx(self._writer)
                if len(live) == 1:
                    outcomes.append((True, live[0].work(tx)))
                else:
                    outcomes.extend(self._in_savepoint(tx, item) for item in live)
        except BaseException as error:
            for item in live:
                item.done.set_exception(_failure(error))
            return
        self.transactions += 1
        for item, (ok, value) in zip(live, outcomes, strict=True):
            if ok:
                item.done.set_result(value)
            else:
                item.done.set_exception(value)

    def _in_savepoint(self, tx: SqliteWriteTx, item: _Write) -> tuple[bool, Any]:
        """One write of a group: its failure undoes its own work only."""
        self._writer.execute("SAVEPOINT group_item")
        try:
            result = item.work(tx)
        except Exception as error:
            if not self._writer.in_transaction:
                raise  # SQLite ended the whole transaction: the group fails together
            self._writer.execute("ROLLBACK TO group_item")
            self._writer.execute("RELEASE group_item")
            return False, error
        self._writer.execute("RELEASE group_item")
        return True, result

    def _commit_group(self, group: list[_Ingest]) -> None:
        # A call cancelled before its commit (its client left) stores nothing.
        calls = [item for item in group if not item.waiter.cancelled()]
        if not calls:
            return
        try:
            with transaction(self._writer):
                received_at = self.clock.now()  # one trigger time per commit (docs/events.md)
                tx = SqliteWriteTx(self._writer)
                outcomes = tx.ingest_group([item.events for item in calls], received_at)
        except BaseException as error:
            _answer([(item, _failure(error)) for item in calls])
            return
        self.transactions += 1
        _answer(list(zip(calls, outcomes, strict=True)))
