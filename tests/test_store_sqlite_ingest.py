"""The SQLite store's group-committed ingest: answers reach their callers, a call cancelled
before its commit stores nothing, and calls queued at close are refused."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from runner.core.clock import FakeClock
from runner.store.errors import EventConflict, StoreError
from runner.store.sqlite import SqliteStore
from tests.store_contract import START, event


def _store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "pw.sqlite3", FakeClock(START))


def _hold_writer(
    store: SqliteStore,
) -> tuple[threading.Event, threading.Event, asyncio.Future[None]]:
    """Keep the writer thread busy until the returned `release` is set."""
    holding, release = threading.Event(), threading.Event()

    def work(_: object) -> None:
        holding.set()
        release.wait(10)

    return holding, release, asyncio.ensure_future(store.write(work))


def test_a_group_answers_every_call(tmp_path: Path) -> None:
    asyncio.run(_a_group_answers_every_call(tmp_path))


async def _a_group_answers_every_call(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        holding, release, held = _hold_writer(store)
        await asyncio.to_thread(holding.wait, 10)
        first = asyncio.ensure_future(store.ingest([event("a")]))
        calls = [asyncio.ensure_future(store.ingest([event(f"e{n}")])) for n in range(20)]
        again = asyncio.ensure_future(store.ingest([event("a")]))
        other = asyncio.ensure_future(store.ingest([event("a", body="other")]))
        await asyncio.sleep(0.05)
        release.set()
        await held
        assert await first == ["stored"]
        assert [await call for call in calls] == [["stored"]] * 20
        assert await again == ["duplicate"]
        with pytest.raises(EventConflict):
            await other
    finally:
        await store.close()


def test_a_call_cancelled_before_its_commit_stores_nothing(tmp_path: Path) -> None:
    asyncio.run(_a_call_cancelled_before_its_commit_stores_nothing(tmp_path))


async def _a_call_cancelled_before_its_commit_stores_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        holding, release, held = _hold_writer(store)
        await asyncio.to_thread(holding.wait, 10)
        gone = asyncio.ensure_future(store.ingest([event("gone")]))
        kept = asyncio.ensure_future(store.ingest([event("kept")]))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        release.set()
        await held
        assert await kept == ["stored"]
        stored = await store.write(lambda tx: tx.unprocessed_events(10))
        assert [e.id for e in stored] == ["kept"]
    finally:
        await store.close()


def test_calls_after_close_are_refused(tmp_path: Path) -> None:
    asyncio.run(_calls_after_close_are_refused(tmp_path))


async def _calls_after_close_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    await store.close()
    with pytest.raises(StoreError):
        await store.ingest([event("late")])
