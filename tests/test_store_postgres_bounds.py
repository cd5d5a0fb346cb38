"""The bounds a PostgreSQL store puts on its sessions (docs/scaling.md "A frozen replica"), and
what happens to work the server cuts short: it is rolled back whole and tried again, never
recorded as a bad event. Also the start-up refusals (a newer schema, no server)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import pytest

from runner.core.clock import FakeClock
from runner.core.store_options import StoreOptions
from runner.engine import events
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from runner.store.base import ReadTx, WriteTx
from runner.store.errors import StoreError, StoreUnavailable
from runner.store.postgres import PostgresStore
from runner.store.postgres_read import PgReadTx
from runner.store.postgres_write import PgWriteTx
from runner.store.versions import SchemaTooNew
from tests.pg import free_port
from tests.store_contract import START, event

T = TypeVar("T")
CTX = EngineContext("UTC", "http://localhost:8080", b"k" * 32)
QUICK = StoreOptions(lock_timeout=1, statement_timeout=2, idle_in_transaction_timeout=1)


def run(
    url: str, body: Callable[[PostgresStore], Awaitable[T]], options: StoreOptions = QUICK
) -> T:
    async def main() -> T:
        store = PostgresStore(url, FakeClock(START), options)
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_sessions_carry_the_bounds_and_name_the_replica(postgres_url: str) -> None:
    def settings(tx: ReadTx) -> list[str]:
        assert isinstance(tx, PgReadTx)
        names = (
            "lock_timeout",
            "statement_timeout",
            "idle_in_transaction_session_timeout",
            "application_name",
        )
        shown = [tx.conn.execute(f"SHOW {name}").fetchone() for name in names]
        return [str(row[0]) for row in shown if row is not None]

    options = StoreOptions(lock_timeout=3, statement_timeout=70, idle_in_transaction_timeout=2)

    async def body(store: PostgresStore) -> list[str]:
        return await store.read(settings)

    lock, statement, idle, name = run(postgres_url, body, options)
    assert (lock, statement, idle) == ("3s", "70s", "2s")
    assert name.startswith(f"postwright pid {os.getpid()} ")


def process(tx: WriteTx) -> int:
    return events.process_pending(tx, Catalog.build([], []), CTX)


def test_a_lock_wait_given_up_mid_processing_leaves_the_event_to_retry(
    postgres_url: str,
) -> None:
    async def body(store: PostgresStore) -> tuple[int, int]:
        await store.ingest([event("e1")])
        assert await store.write(process) == 1  # the subscriber now exists
        await store.ingest([event("e2", body="other")])
        with psycopg.connect(postgres_url) as holder:  # another session holds its row
            holder.execute("SELECT 1 FROM subscribers WHERE email = 'ann@example.com' FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="lock timeout"):
                await store.write(process)
            waited = time.monotonic() - started
        failed = await store.read(lambda tx: tx.failed_events(10))
        assert failed == []  # not blamed on the event
        return await store.write(process), round(waited)

    processed, waited = run(postgres_url, body)
    assert (processed, waited) == (1, 1)  # retried after the lock was free: processed once


def test_the_server_ends_a_session_idle_in_a_transaction_and_the_store_goes_on(
    postgres_url: str,
) -> None:
    def paused(tx: WriteTx) -> None:
        assert isinstance(tx, PgWriteTx)
        tx.set_meta("before", "pause")
        time.sleep(1.5)  # a stopped process: the server gives up on it after 1 s
        tx.set_meta("after", "pause")

    async def body(store: PostgresStore) -> tuple[str | None, str | None]:
        with pytest.raises(StoreUnavailable):
            await store.write(paused)
        for _ in range(3):  # the pool hands out working connections again, never the dead one
            await store.write(lambda tx: tx.set_meta("later", "ok"))
        return await store.read(lambda tx: tx.meta("before")), await store.read(
            lambda tx: tx.meta("later")
        )

    assert run(postgres_url, body) == (None, "ok")  # the paused transaction was rolled back


def test_a_database_migrated_by_a_newer_release_is_refused(postgres_url: str) -> None:
    run(postgres_url, lambda store: asyncio.sleep(0))
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (9999, '9999_future', now())")
    with pytest.raises(SchemaTooNew, match="schema version 9999 is unknown"):
        PostgresStore(postgres_url, FakeClock(START))


def test_no_server_is_one_clear_error() -> None:
    url = f"postgresql://postwright@127.0.0.1:{free_port()}/none?connect_timeout=2"
    with pytest.raises(StoreError, match="cannot use the PostgreSQL database") as error:
        PostgresStore(url, FakeClock(START))
    assert "\n" not in str(error.value)
