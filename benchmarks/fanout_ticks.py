"""The schedule fan-out's sweep alone (issue 15): the same store and automation as
benchmarks/fanout.py, scheduler ticks back to back in one process, no sending; pending sends
created per second next to the bare chunked `INSERT ... SELECT` floor on the same file.

    .venv/bin/python benchmarks/fanout_ticks.py [--subscribers 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout import CTX
from fanout_setup import FIRING, floor, seed

from runner.core.clock import FakeClock
from runner.engine import scheduler
from runner.engine.catalog import Catalog
from runner.store import open_store


async def sweep(url: str) -> tuple[float, int]:
    """Seconds until a tick says the sweep is over, and the ticks it took."""
    store = open_store(url, FakeClock(FIRING))
    catalog = await store.read(lambda tx: Catalog.build(tx.automations(), tx.status_changes()))
    started, ticks = time.perf_counter(), 0
    try:
        while True:
            ticks += 1
            result = await store.write(
                lambda tx: scheduler.run_tick(
                    tx, catalog, CTX, FIRING, seconds=scheduler.TICK_SECONDS
                )
            )
            if not result.more:
                return time.perf_counter() - started, ticks
    finally:
        await store.close()


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/fanout.db"
        await seed(url, count)
        took, ticks = await sweep(url)
        matches = (count + 9) // 10
        floor_s = floor(url, count)
    rate, floor_rate = matches / took, matches / floor_s
    print(f"sweep alone on sqlite: {count:,} subscribers, {matches:,} pending sends, {ticks} ticks")
    print(f"pending/s {rate:,.0f}  floor/s {floor_rate:,.0f}  vs floor {rate / floor_rate:.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().subscribers))
