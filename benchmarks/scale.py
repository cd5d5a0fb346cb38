"""Scaling benchmark: events/s and sends/s of 1, 2 and 3 `postwright serve` replicas on one
PostgreSQL on this machine, next to one replica on SQLite measured in the same run, with the
CPU each replica spent (utime + stime from /proc/<pid>/stat) per 1,000 events or sends.

Events/s: one `wrk` per replica (batches of 100 events, as benchmarks/ingest.py does) for
`--seconds`, summed, with `max_backlog` lifted (ingestion outruns processing). Sends/s:
`--sends` signups posted round-robin to an automation with `wait: 1h` while the replicas'
shared fake clock (POSTWRIGHT_FAKE_CLOCK) stands still; once every send is pending the clock
jumps 2 h and the time until the outbox holds them all is measured. The load average before
each configuration is printed beside it: other work on the machine skews every figure.
The PostgreSQL server is a throwaway one started like tests/pg.py does (its binaries must be
installed), each configuration on a fresh database. Client, replicas and server share this
machine's cores: the curve says what one machine does, not a cluster.

    .venv/bin/python benchmarks/scale.py [--seconds 8] [--sends 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from ingest import BATCH_LUA, UNBOUNDED, wrk  # noqa: E402

from runner.cli.clocks import FAKE_CLOCK_VARIABLE, FileClock  # noqa: E402
from runner.store import open_store  # noqa: E402
from runner.store.base import ReadTx  # noqa: E402
from tests.pg import PostgresServer, find_binaries, start_local_server  # noqa: E402
from tests.serving import serve  # noqa: E402

T = TypeVar("T")
START = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
TICKS = os.sysconf("SC_CLK_TCK")
WAIT = 300.0  # seconds: bound of every wait on the replicas
BATCH = 100

REMINDER = """\
id: reminder
status: running
trigger: {type: event, event: signup}
wait: 1h
email:
  from: "Bench <bench@shop.test>"
  subject: "Hello {{ subscriber.email }}"
  text: "Hello {{ subscriber.email }}"
"""


@dataclass
class Result:
    """The figures of one configuration."""

    name: str
    replicas: int
    events_per_s: float
    event_cpu: list[float]  # CPU seconds per 1,000 events, per replica
    sends_per_s: float
    send_cpu: list[float]  # CPU seconds per 1,000 sends, per replica
    load: float  # the machine's 1-minute load average before the run (other work included)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@contextlib.contextmanager
def replicas(
    work: Path, count: int, database: str | None, clock: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """`count` serve processes over one repository and store; (process, base URL) each."""
    repo = work / "repo"
    (repo / "automations").mkdir(parents=True)
    (repo / "automations" / "reminder.yaml").write_text(REMINDER)
    environ = {FAKE_CLOCK_VARIABLE: str(clock)}
    # Ingestion outruns event processing: past max_backlog the replicas would shed (429).
    # This measures how fast they accept; the shedding check still runs on every request.
    environ.update(UNBOUNDED)
    if database is not None:
        environ["POSTWRIGHT_DATABASE_URL"] = database
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                serve(["--repo", str(repo)], work / f"replica-{n}.log", environ=environ)
            )
            for n in range(count)
        ]
        yield [(replica.process, replica.url) for replica in started]


def read(database: str, clock: Path, work: Callable[[ReadTx], T]) -> T:
    """One read of the shared store."""

    async def run() -> T:
        store = open_store(database, FileClock(clock))
        try:
            return await store.read(work)
        finally:
            await store.close()

    return asyncio.run(run())


def wait_until(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)  # other processes are working


def measure(
    name: str, work: Path, count: int, database: str | None, seconds: int, sends: int
) -> Result:
    """Events/s then sends/s of `count` replicas on `database` (None: SQLite in the repo)."""
    work.mkdir()
    load_before = os.getloadavg()[0]
    clock = work / "clock"
    FileClock.write(clock, START)
    store_url = database or f"sqlite:///{work / 'repo' / '.postwright' / 'postwright.db'}"
    with replicas(work, count, database, clock) as running:
        pids = [process.pid for process, _ in running]
        urls = [url for _, url in running]

        # Events/s: one wrk per replica at once; no signups, so nothing becomes due.
        before = [cpu_seconds(pid) for pid in pids]
        rates: list[float] = [0.0] * count

        def load(n: int) -> None:
            rates[n] = wrk(f"{urls[n]}/v1/events", BATCH_LUA, seconds, connections=16 // count)

        threads = [threading.Thread(target=load, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = sum(rates) * BATCH
        wait_until("the events processed", lambda: read(store_url, clock, _queue_depth) == 0)
        event_cpu = [
            (cpu_seconds(pid) - b) / (events * seconds) * 1000
            for pid, b in zip(pids, before, strict=True)
        ]

        # Sends/s: every send pending first, then the clock jumps past the wait.
        with httpx.Client(timeout=60.0) as client:
            for n, first in enumerate(range(0, sends, BATCH)):
                batch = [
                    {"id": f"s{i}", "type": "signup", "subscriber": {"email": f"s{i}@b.test"}}
                    for i in range(first, min(first + BATCH, sends))
                ]
                client.post(
                    f"{urls[n % count]}/v1/events", json={"events": batch}
                ).raise_for_status()
        wait_until(
            "the sends pending",
            lambda: read(store_url, clock, lambda tx: tx.stats("reminder").pending) >= sends,
        )
        before = [cpu_seconds(pid) for pid in pids]
        started = time.monotonic()
        FileClock.write(clock, START + timedelta(hours=2))
        wait_until(
            "the sends sent",
            lambda: read(store_url, clock, lambda tx: tx.stats("reminder").sent) >= sends,
        )
        elapsed = time.monotonic() - started
        sent = read(store_url, clock, lambda tx: tx.stats("reminder").sent)
        if sent != sends:
            raise RuntimeError(f"{name}: {sent} sends recorded for {sends} signups")
        send_cpu = [
            (cpu_seconds(pid) - b) / sends * 1000 for pid, b in zip(pids, before, strict=True)
        ]
    return Result(name, count, events, event_cpu, sends / elapsed, send_cpu, load_before)


def _queue_depth(tx: ReadTx) -> int:
    return tx.queue_depth()


@contextlib.contextmanager
def postgres() -> Iterator[PostgresServer]:
    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    yield from start_local_server(binaries)


def report(results: list[Result]) -> None:
    sqlite = results[0]
    print(
        f"{'configuration':<16}{'events/s':>10}{'x SQLite':>9}{'sends/s':>9}{'x SQLite':>9}"
        f"  {'CPU s per 1k events: replicas (sum)':<38}{'CPU s per 1k sends: replicas (sum)':<38}"
        "load before"
    )
    for r in results:
        print(
            f"{r.name:<16}{r.events_per_s:>10,.0f}{r.events_per_s / sqlite.events_per_s:>9.2f}"
            f"{r.sends_per_s:>9,.0f}{r.sends_per_s / sqlite.sends_per_s:>9.2f}"
            f"  {_cpu(r.event_cpu):<38}{_cpu(r.send_cpu):<38}{r.load:.2f}"
        )
    print(
        f"\n{os.cpu_count()} cores shared by wrk, the replicas and PostgreSQL; CPU is per 1,000"
        " events or sends of the whole cluster, spent by each replica (PostgreSQL's not counted);"
        f" load: the 1-minute load average before each run (now {os.getloadavg()[0]:.2f})"
    )


def _cpu(figures: list[float]) -> str:
    return " ".join(f"{c:.3f}" for c in figures) + f" ({sum(figures):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--sends", type=int, default=5000, help="sends per configuration")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="postwright-scale-") as folder, postgres() as server:
        work = Path(folder)
        results.append(measure("SQLite, 1", work / "sqlite", 1, None, args.seconds, args.sends))
        for count in (1, 2, 3):
            database = server.create_database()
            try:
                name = f"PostgreSQL, {count}"
                results.append(
                    measure(name, work / f"pg{count}", count, database, args.seconds, args.sends)
                )
            finally:
                server.drop_database(database)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
