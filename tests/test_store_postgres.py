"""Tests of the PostgreSQL store: the shared contract on a real server, plus what several
replicas on one database need (disjoint claims, lease fencing, concurrent migrations)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
import pytest

from runner.core.clock import FakeClock
from runner.core.records import SendStatus, Subscriber
from runner.store.base import ReadTx, Store, WriteTx
from runner.store.errors import StoreError, TransactionAborted
from runner.store.postgres import MIGRATIONS, PostgresStore
from runner.store.postgres_read import PgReadTx
from runner.store.postgres_write import ENGINE_LOCK, PgWriteTx
from tests.store_contract import CONTRACT, START, Check, event, seed, send
from tests.store_contract_dashboard import DASHBOARD_CONTRACT
from tests.store_contract_outcomes import OUTCOMES_CONTRACT
from tests.store_contract_people import PEOPLE_CONTRACT
from tests.store_contract_sweep import SWEEP_CONTRACT

T = TypeVar("T")

FILES = sorted(MIGRATIONS.glob("*.sql"))
VERSIONS = [int(p.stem[:4]) for p in FILES]


def run(url: str, body: Callable[[PostgresStore, FakeClock], Awaitable[T]]) -> T:
    """Open a store on `url` with a fake clock, run `body`, close the store."""

    async def main() -> T:
        clock = FakeClock(START)
        store = PostgresStore(url, clock)
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
def test_contract(check: Check, postgres_url: str) -> None:
    run(postgres_url, check)


def test_the_store_satisfies_the_protocols(postgres_url: str) -> None:
    def typed(store: PostgresStore) -> Store:
        return store  # mypy checks PostgresStore against Store here

    def tx_types(conn: psycopg.Connection[Any]) -> tuple[ReadTx, WriteTx]:
        return PgReadTx(conn), PgWriteTx(conn)

    async def body(store: PostgresStore, clock: FakeClock) -> None:
        assert typed(store) is store
        assert store.migrated == VERSIONS

    run(postgres_url, body)
    with psycopg.connect(postgres_url) as conn:
        assert len(tx_types(conn)) == 2
        found = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert found.fetchall() == [(int(p.stem[:4]), p.stem) for p in FILES]


def test_claimers_on_two_replicas_never_claim_the_same_send(postgres_url: str) -> None:
    total, claimers = 1000, 4

    async def claimer(store: PostgresStore, token: str) -> list[str]:
        mine: list[str] = []
        lease = START + timedelta(minutes=1)
        while True:
            batch = await store.write(lambda tx: tx.claim_due(START, 25, lease, token))
            if not batch:
                return mine
            assert {s.lease_token for s in batch} == {token}
            mine.extend(s.id for s in batch)

    async def main() -> list[list[str]]:
        clock = FakeClock(START)
        first, second = PostgresStore(postgres_url, clock), PostgresStore(postgres_url, clock)
        try:
            (ann,) = await seed(first, "ann@example.com")

            def fill(tx: WriteTx) -> None:
                for n in range(total):
                    tx.insert_pending(send(f"s{n:04}", ann, START - timedelta(seconds=n % 7)))

            await first.write(fill)
            stores = [first, second] * (claimers // 2)
            return await asyncio.gather(
                *(claimer(store, f"t{n}") for n, store in enumerate(stores))
            )
        finally:
            await first.close()
            await second.close()

    claimed = asyncio.run(main())
    counts = collections.Counter(send_id for ids in claimed for send_id in ids)
    assert len(counts) == total and set(counts.values()) == {1}
    assert sum(1 for ids in claimed if ids) >= 2  # the claimers really ran side by side


def test_a_stale_lease_cannot_finish_after_another_replica_reclaimed(postgres_url: str) -> None:
    minute = timedelta(minutes=1)

    async def main() -> tuple[bool, bool, bool, SendStatus | None]:
        clock = FakeClock(START)
        old, new = PostgresStore(postgres_url, clock), PostgresStore(postgres_url, clock)
        try:
            (ann,) = await seed(old, "ann@example.com")
            await old.write(lambda tx: tx.insert_pending(send("s1", ann)))
            held = await old.write(lambda tx: tx.claim_due(START, 1, START + minute, "old"))
            assert [s.id for s in held] == ["s1"]
            later = START + 2 * minute  # the old replica stalled past its lease
            taken = await new.write(lambda tx: tx.claim_due(later, 1, later + minute, "new"))
            assert [(s.id, s.lease_token) for s in taken] == [("s1", "new")]
            late = await old.write(lambda tx: tx.finish_claim("s1", "old", SendStatus.SENT, later))
            retry = await old.write(lambda tx: tx.retry_claim("s1", "old", later, later, "x"))
            done = await new.write(lambda tx: tx.finish_claim("s1", "new", SendStatus.SENT, later))
            found = await old.read(lambda tx: tx.pending_send("s1"))
            return late, retry, done, None if found is None else found.status
        finally:
            await old.close()
            await new.close()

    assert asyncio.run(main()) == (False, False, True, SendStatus.SENT)


def test_concurrent_start_up_migrates_once(postgres_url: str) -> None:
    clock = FakeClock(START)
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: PostgresStore(postgres_url, clock), range(4)))

    async def close_all() -> None:
        for store in stores:
            await store.close()

    asyncio.run(close_all())
    # Every file applied exactly once, by whichever replica took its lock first.
    assert sorted(version for store in stores for version in store.migrated) == VERSIONS
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert found.fetchall() == [(v,) for v in VERSIONS]


def test_concurrent_ingests_are_group_committed(postgres_url: str) -> None:
    async def body(store: PostgresStore, clock: FakeClock) -> tuple[int, list[list[str]]]:
        before = store.transactions
        results = await asyncio.gather(*(store.ingest([event(f"g{i}")]) for i in range(50)))
        return store.transactions - before, results

    transactions, results = run(postgres_url, body)
    assert results == [["stored"]] * 50
    assert 1 <= transactions < 50


def test_ingests_of_two_replicas_keep_ids_unique(postgres_url: str) -> None:
    async def main() -> list[list[str]]:
        clock = FakeClock(START)
        first, second = PostgresStore(postgres_url, clock), PostgresStore(postgres_url, clock)
        try:
            calls = [first.ingest([event(f"e{n % 20}")]) for n in range(40)]
            calls += [second.ingest([event(f"e{n}")]) for n in range(20)]
            return await asyncio.gather(*calls)
        finally:
            await first.close()
            await second.close()

    results = asyncio.run(main())
    assert sum(r == ["stored"] for r in results) == 20
    assert sum(r == ["duplicate"] for r in results) == 40


def test_expected_failures_leave_the_transaction_usable(postgres_url: str) -> None:
    async def body(store: PostgresStore, clock: FakeClock) -> list[str | None]:
        await seed(store, "ann@example.com")

        def work(tx: WriteTx) -> list[str | None]:
            with pytest.raises(StoreError):
                tx.save_subscriber(Subscriber(id=None, email="ann@example.com"))
            with pytest.raises(StoreError):
                tx.save_subscriber(Subscriber(id=999, email="zed@example.com"))
            tx.set_meta("k", "v")
            return [tx.meta("k")]

        return await store.write(work)

    assert run(postgres_url, body) == ["v"]


def test_a_swallowed_database_error_is_not_reported_as_committed(postgres_url: str) -> None:
    async def body(store: PostgresStore, clock: FakeClock) -> None:
        def work(tx: WriteTx) -> None:
            assert isinstance(tx, PgWriteTx)
            tx.set_meta("k", "v")
            try:
                tx.conn.execute("SELECT * FROM nowhere")
            except psycopg.errors.UndefinedTable:
                pass

        with pytest.raises(TransactionAborted):
            await store.write(work)
        assert await store.read(lambda tx: tx.meta("k")) is None
        await store.write(lambda tx: tx.set_meta("k", "w"))  # the pool goes on
        assert await store.read(lambda tx: tx.meta("k")) == "w"

    run(postgres_url, body)


def test_readers_cannot_write(postgres_url: str) -> None:
    def sneak(tx: ReadTx) -> None:
        assert isinstance(tx, PgReadTx)
        tx.conn.execute("INSERT INTO meta VALUES ('k', 'v')")

    async def body(store: PostgresStore, clock: FakeClock) -> None:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            await store.read(sneak)

    run(postgres_url, body)


def test_a_closed_store_refuses_work(postgres_url: str) -> None:
    async def body(store: PostgresStore, clock: FakeClock) -> None:
        await store.close()
        with pytest.raises(StoreError):
            await store.write(lambda tx: tx.meta("k"))
        with pytest.raises(StoreError):
            await store.ingest([event("e1")])

    run(postgres_url, body)


def test_try_lock_engine_refuses_while_another_replica_holds_it(postgres_url: str) -> None:
    async def body(store: PostgresStore, clock: FakeClock) -> list[bool]:
        with psycopg.connect(postgres_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (ENGINE_LOCK,))
            busy = await store.write(lambda tx: tx.try_lock_engine())
            holder.rollback()  # the holder's transaction ends: the lock is free
            free = await store.write(lambda tx: tx.try_lock_engine())
        return [busy, free]

    assert run(postgres_url, body) == [False, True]
