"""Reading a runner's store from the test process: one read transaction, opened and closed
around it (SQLite while `serve` runs is fine: readers never block its writer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from runner.core.clock import SystemClock
from runner.core.store_options import StoreOptions
from runner.store import open_store
from runner.store.base import ReadTx

T = TypeVar("T")
_OPTIONS = StoreOptions(integrity_check=False)  # the server checked it when it started


def read_store(url: str, work: Callable[[ReadTx], T]) -> T:
    """`work` in one read transaction on the store at `url`; its result."""

    async def run() -> T:
        store = open_store(url, SystemClock(), _OPTIONS)
        try:
            return await store.read(work)
        finally:
            await store.close()

    return asyncio.run(run())
