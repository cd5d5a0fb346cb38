"""Tests of the SQLite store: the shared contract on a real file, plus what only SQLite has
(pragmas, migrations, group commit counts, BEGIN IMMEDIATE, the due index, other processes)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from runner.core.clock import FakeClock
from runner.engine.context import EngineContext
from runner.engine.worker import Worker
from runner.providers import Providers
from runner.store import open_store
from runner.store.base import ReadTx, Store, WriteTx
from runner.store.errors import StoreError, TransactionAborted
from runner.store.sqlite import SqliteStore
from runner.store.sqlite_open import MIGRATIONS, connect, migrate
from runner.store.sqlite_read import SqliteReadTx
from runner.store.sqlite_write import SqliteWriteTx
from tests.store_contract import CONTRACT, START, Check, event, seed, send
from tests.store_contract_dashboard import DASHBOARD_CONTRACT
from tests.store_contract_outcomes import OUTCOMES_CONTRACT
from tests.store_contract_people import PEOPLE_CONTRACT
from tests.store_contract_sweep import SWEEP_CONTRACT

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent

VERSIONS = sorted(int(p.stem[:4]) for p in MIGRATIONS.glob("*.sql"))


def run(path: Path, body: Callable[[SqliteStore, FakeClock], Awaitable[T]]) -> T:
    """Open a store on `path` with a fake clock, run `body`, close the store."""

    async def main() -> T:
        clock = FakeClock(START)
        store = SqliteStore(path, clock)
        try:
            return await body(store, clock)
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    "check",
    CONTRACT + PEOPLE_CONTRACT + DASHBOARD_CONTRACT + SWEEP_CONTRACT + OUTCOMES_CONTRACT,
    ids=lambda check: check.__name__,
)
def test_contract(check: Check, tmp_path: Path) -> None:
    run(tmp_path / "store.db", check)


def test_the_store_satisfies_the_protocols(tmp_path: Path) -> None:
    def typed(store: SqliteStore) -> Store:
        return store  # mypy checks SqliteStore against Store here

    def tx_types(db: sqlite3.Connection) -> tuple[ReadTx, WriteTx]:
        from runner.store.sqlite_write import SqliteWriteTx

        return SqliteReadTx(db), SqliteWriteTx(db)

    async def body(store: SqliteStore, clock: FakeClock) -> None:
        assert typed(store) is store

    run(tmp_path / "s.db", body)
    assert len(tx_types(sqlite3.connect(":memory:"))) == 2


def test_open_store_creates_folders_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "runner.db"

    async def main() -> list[str]:
        clock = FakeClock(START)
        first = open_store(f"sqlite:///{path}", clock)
        assert isinstance(first, SqliteStore) and first.migrated == VERSIONS
        await first.ingest([event("e1")])
        await first.close()
        second = open_store(f"sqlite:///{path}", clock)
        assert isinstance(second, SqliteStore) and second.migrated == []
        try:
            return await second.ingest([event("e1")])
        finally:
            await second.close()

    assert asyncio.run(main()) == ["duplicate"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version, name FROM schema_migrations").fetchall() == [
            (int(p.stem[:4]), p.stem) for p in sorted(MIGRATIONS.glob("*.sql"))
        ]


@pytest.mark.parametrize("url", ["postgres://x/y", "sqlite:///", "sqlite:/x.db"])
def test_open_store_refuses_other_urls(url: str) -> None:
    with pytest.raises(StoreError):
        open_store(url, FakeClock(START))


def test_pragmas_hold_on_writer_and_readers(tmp_path: Path) -> None:
    def pragmas(tx: ReadTx) -> list[object]:
        assert isinstance(tx, SqliteReadTx)
        names = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys", "query_only")
        return [tx.db.execute(f"PRAGMA {name}").fetchone()[0] for name in names]

    async def body(store: SqliteStore, clock: FakeClock) -> tuple[list[object], list[object]]:
        return await store.read(pragmas), await store.write(pragmas)

    read, write = run(tmp_path / "s.db", body)
    assert read[:4] == write[:4] == ["wal", 2, 10_000, 1]
    assert (read[4], write[4]) == (1, 0)  # readers cannot write


def test_readers_cannot_write(tmp_path: Path) -> None:
    def sneak(tx: ReadTx) -> None:
        assert isinstance(tx, SqliteReadTx)
        tx.db.execute("INSERT INTO meta VALUES ('k', 'v')")

    async def body(store: SqliteStore, clock: FakeClock) -> None:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await store.read(sneak)

    run(tmp_path / "s.db", body)


def test_a_failed_pragma_is_reported(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="journal_mode"):
        connect(Path(":memory:"))  # an in-memory database has no WAL


def test_writes_begin_immediate(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    def work(tx: WriteTx) -> str:
        # Nothing was written yet, yet the write lock is already held: BEGIN IMMEDIATE.
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            return str(error)
        finally:
            other.close()
        return "not locked"

    async def body(store: SqliteStore, clock: FakeClock) -> str:
        return await store.write(work)

    assert run(path, body) == "database is locked"


def test_concurrent_ingests_are_group_committed(tmp_path: Path) -> None:
    async def body(store: SqliteStore, clock: FakeClock) -> tuple[int, list[list[str]]]:
        before = store.transactions
        results = await asyncio.gather(*(store.ingest([event(f"g{i}")]) for i in range(50)))
        return store.transactions - before, results

    transactions, results = run(tmp_path / "s.db", body)
    assert results == [["stored"]] * 50
    assert 1 <= transactions < 50


def test_writes_run_in_order_and_are_committed_together(tmp_path: Path) -> None:
    def setter(value: str) -> Callable[[WriteTx], None]:
        return lambda tx: tx.set_meta("k", value)

    async def body(store: SqliteStore, clock: FakeClock) -> tuple[int, str | None]:
        await asyncio.gather(*(store.write(setter(str(i))) for i in range(50)))
        return store.transactions, await store.read(lambda tx: tx.meta("k"))

    transactions, last = run(tmp_path / "s.db", body)
    assert last == "49"
    assert 1 <= transactions < 50  # writes waiting together share one commit


def test_a_failing_write_of_a_group_undoes_only_its_own_work(tmp_path: Path) -> None:
    def work(n: int) -> Callable[[WriteTx], int]:
        def run_it(tx: WriteTx) -> int:
            tx.set_meta(f"k{n}", "set")
            if n % 3 == 1:
                raise ValueError(f"write {n} fails")
            return n

        return run_it

    async def body(store: SqliteStore, clock: FakeClock) -> list[object]:
        results = await asyncio.gather(
            *(store.write(work(n)) for n in range(30)), return_exceptions=True
        )
        kept = await store.read(lambda tx: [tx.meta(f"k{n}") for n in range(30)])
        return [*results, *kept]

    values = run(tmp_path / "s.db", body)
    results, kept = values[:30], values[30:]
    for n in range(30):
        if n % 3 == 1:
            assert isinstance(results[n], ValueError) and kept[n] is None
        else:
            assert results[n] == n and kept[n] == "set"


def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db", FakeClock(START))
        await store.close()
        await store.close()  # closing twice is harmless
        with pytest.raises(StoreError):
            await store.write(lambda tx: tx.meta("k"))
        with pytest.raises(StoreError):
            await store.read(lambda tx: tx.meta("k"))

    asyncio.run(main())


def test_due_query_uses_the_partial_index(tmp_path: Path) -> None:
    """In the index's order, without sorting: after a firing, a claim must not sort every
    send due at the same instant to take its batch."""
    path = tmp_path / "s.db"
    run(path, lambda store, clock: seed(store))
    db = sqlite3.connect(path)
    inner = (
        "SELECT id FROM pending_sends WHERE due_at <= :now AND status IN ('pending', 'claimed')"
        " AND (status = 'pending' OR lease_until < :now) ORDER BY due_at, id LIMIT :limit"
    )
    plan = db.execute(f"EXPLAIN QUERY PLAN {inner}", {"now": "x", "limit": 1}).fetchall()
    db.close()
    assert any("USING INDEX pending_due" in str(row[-1]) for row in plan), plan
    assert not any("TEMP B-TREE" in str(row[-1]) for row in plan), plan


def test_pending_sends_keep_one_index_per_hot_query(tmp_path: Path) -> None:
    """A fan-out's inserts pay for every index: the active sends of a subscriber are found
    through sends_by_subscriber (pending_by_subscriber was a second index for them)."""
    path = tmp_path / "s.db"
    run(path, lambda store, clock: seed(store))
    db = sqlite3.connect(path)
    names = {row[1] for row in db.execute("PRAGMA index_list(pending_sends)")}
    active = (
        "SELECT * FROM pending_sends WHERE subscriber_id = 1 AND status IN ('pending', 'claimed')"
        " AND automation_id = 'a'"
    )
    plan = db.execute(f"EXPLAIN QUERY PLAN {active}").fetchall()
    db.close()
    assert "pending_by_subscriber" not in names
    assert {"pending_due", "pending_by_automation", "sends_by_subscriber"} <= names
    assert any("sends_by_subscriber" in str(row[-1]) for row in plan), plan


CHILD = """
import asyncio, json, os, sys
from datetime import UTC, datetime
from runner.core.clock import FakeClock
from runner.store import open_store
from tests.store_contract import event

async def main() -> None:
    store = open_store("sqlite:///" + sys.argv[1], FakeClock(datetime(2026, 3, 2, tzinfo=UTC)))
    if sys.argv[2] == "crash":
        print(json.dumps(await store.ingest([event("from-child")])), flush=True)
        os._exit(0)  # no close, no cleanup: the acknowledged event must already be durable
    found = await store.read(lambda tx: (tx.meta("k"), tx.subscriber("ann@example.com")))
    print(json.dumps([found[0], found[1] is not None]))
    await store.close()

asyncio.run(main())
"""


def child(path: Path, mode: str) -> str:
    """Run CHILD in another Python process against `path`; its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path), mode],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        timeout=60,
    )
    return done.stdout.strip()


def test_another_process_sees_committed_data(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def body(store: SqliteStore, clock: FakeClock) -> str:
        await seed(store, "ann@example.com")
        await store.write(lambda tx: tx.set_meta("k", "v"))
        return await asyncio.to_thread(child, path, "read")  # while this store is still open

    assert json.loads(run(path, body)) == ["v", True]


def test_an_acknowledged_ingest_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    assert json.loads(child(path, "crash")) == ["stored"]

    async def body(store: SqliteStore, clock: FakeClock) -> list[str | None]:
        return [e.id for e in await store.write(lambda tx: tx.unprocessed_events(10))]

    assert run(path, body) == ["from-child"]


def test_a_send_references_a_known_subscriber(tmp_path: Path) -> None:
    async def body(store: SqliteStore, clock: FakeClock) -> None:
        await seed(store)
        with pytest.raises(sqlite3.IntegrityError):
            await store.write(lambda tx: tx.insert_pending(send("s1", 999)))

    run(tmp_path / "s.db", body)


def test_migrations_apply_in_order_and_a_failed_one_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_a.sql").write_text("CREATE TABLE a (x INTEGER);\n-- done\n")
    (folder / "0002_b.sql").write_text(
        "CREATE TABLE b (x INTEGER);\nINSERT INTO nowhere VALUES (1);\n"
    )
    (folder / "0003_c.sql").write_text("CREATE TABLE c (x INTEGER)\n")
    db = connect(tmp_path / "m.db")
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        migrate(db, FakeClock(START), folder)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"a", "schema_migrations"} <= tables and "b" not in tables
    (folder / "0002_b.sql").write_text("CREATE TABLE b (x INTEGER);\n")
    with pytest.raises(StoreError, match="unterminated"):
        migrate(db, FakeClock(START), folder)
    assert [row[0] for row in db.execute("SELECT version FROM schema_migrations")] == [1, 2]
    db.close()


def test_a_first_schema_database_is_upgraded_in_place(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(MIGRATIONS / "0001_initial.sql", first)
    path = tmp_path / "old.db"
    db = connect(path)
    assert migrate(db, FakeClock(START), first) == [1]
    db.executescript(
        "INSERT INTO events (type, email, data, received_at) VALUES ('signup', 'a@x.io', '{}',"
        " '2026-03-02T09:00:00.000000Z');"
        "INSERT INTO subscribers (email, fields, groups) VALUES ('a@x.io', '{}', '[]');"
        "INSERT INTO automations VALUES ('welcome', 1, 'running', '', '{}', 'p', NULL,"
        " '2026-03-02T09:00:00.000000Z', NULL, NULL);"
        "INSERT INTO pending_sends VALUES ('s1', 'welcome', 1, 'a@x.io',"
        " '2026-03-02T09:00:00.000000Z', 'pending', '2026-03-02T09:00:00.000000Z', '{}',"
        " '2026-03-02T09:00:00.000000Z', 's1', 0, '{}', NULL, 0, NULL, NULL, NULL, NULL);"
    )
    db.close()

    async def body(store: SqliteStore, clock: FakeClock) -> None:
        assert store.migrated == VERSIONS[1:]
        old = await store.read(lambda tx: tx.pending_send("s1"))
        assert old is not None and old.skip_window is False and old.in_flight is None
        person = await store.read(lambda tx: tx.subscriber("a@x.io"))
        assert person is not None and person.suppressed_source is None
        assert person.erased_at is None
        [stored] = await store.write(lambda tx: tx.unprocessed_events(10))
        assert stored.error is None

    run(path, body)


def test_a_transaction_lost_inside_a_savepoint_is_reported(tmp_path: Path) -> None:
    async def body(store: SqliteStore, clock: FakeClock) -> None:
        def work(tx: WriteTx) -> None:
            assert isinstance(tx, SqliteWriteTx)
            tx.set_meta("k", "v")
            with tx.savepoint():
                tx.db.execute("ROLLBACK")  # what SQLite does itself on a full disk
                raise RuntimeError("disk full")

        with pytest.raises(TransactionAborted, match="disk full"):
            await store.write(work)
        assert await store.read(lambda tx: tx.meta("k")) is None
        await store.write(lambda tx: tx.set_meta("k", "w"))  # the writer goes on
        assert await store.read(lambda tx: tx.meta("k")) == "w"

    run(tmp_path / "lost.db", body)


def test_the_worker_forgets_event_ids_past_their_retention_at_most_hourly(
    tmp_path: Path,
) -> None:
    async def body(store: SqliteStore, clock: FakeClock) -> None:
        ctx = EngineContext("UTC", "https://pw.example", b"k" * 32)
        worker = Worker(store, ctx, clock, Providers(), event_id_retention=timedelta(minutes=10))
        await store.ingest([event("a")])
        await worker.run_once()  # the first round purges (nothing is old enough yet)
        clock.advance(timedelta(minutes=30))
        await worker.run_once()  # within the hour: no purge
        assert await store.ingest([event("a")]) == ["duplicate"]
        clock.advance(timedelta(minutes=31))
        await worker.run_once()
        assert await store.ingest([event("a")]) == ["stored"]

    run(tmp_path / "purge.db", body)
