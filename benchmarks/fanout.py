"""A `schedule` firing over many subscribers (issue 15): pending sends created per second, the
time until all of them reached a fake Resend, and the memory the firing took, next to a bare
chunked `INSERT INTO pending_sends SELECT ... FROM subscribers` on the same file (the floor).

The subscribers are bulk-loaded straight into the store's own table, setup only (SQLite:
`executemany` in chunked transactions; PostgreSQL: COPY; benchmarks/fanout_setup.py); 10 % have
`plan: pro`, the automation's audience. The real worker (engine and
send loops) runs with a fake clock stepped just past the firing. Memory: the peak resident size
during the firing above the size before it, at a tenth of the subscribers and at all of them
(flat means the two peaks are close). On PostgreSQL, `--replicas` worker processes share the
engine and the sending; the fake counts every email and every send id it saw twice.

    .venv/bin/python benchmarks/fanout.py [--subscribers 1000000] [--store sqlite|postgres]
        [--replicas 3] [--short]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from asgi_kit import Receive, Scope, Send, answer_json, read_body, run_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fanout_setup import FIRING, count_sql, floor, rss_mb, seed
from send import start_fake

from runner.core.clock import FakeClock
from runner.core.config import ResendProvider as ResendSettings
from runner.engine.context import EngineContext
from runner.engine.worker import Worker
from runner.providers import Providers
from runner.providers.http import make_client
from runner.providers.resend import ResendProvider
from runner.store import open_store

BEFORE = datetime(2026, 3, 2, 8, 59, tzinfo=UTC)  # where the workers start, warmed up
CTX = EngineContext("UTC", "https://mail.shop.test", b"unsubscribe-key-for-bench-000000")


# --- the fake Resend: counts every email and every send id seen twice ------------------

_seen: set[str] = set()
_counts = {"emails": 0, "duplicates": 0}


def _send_id(item: dict[str, Any]) -> str:
    tags = {t["name"]: t["value"] for t in item.get("tags", [])}
    return str(tags.get("postwright_send_id"))


async def fake_resend(scope: Scope, receive: Receive, send: Send) -> None:
    """Resend's success answers for /emails and /emails/batch; GET /counts reports."""
    if scope["type"] != "http":
        return
    received = await read_body(receive)
    answer: Any = dict(_counts)
    if scope["path"].startswith("/emails"):
        body = json.loads(received)
        items = body if isinstance(body, list) else [body]
        for item in items:
            ident = _send_id(item)
            _counts["emails"] += 1
            _counts["duplicates"] += ident in _seen
            _seen.add(ident)
        ids = [{"id": str(uuid.uuid4())} for _ in items]
        answer = {"data": ids} if isinstance(body, list) else ids[0]
    await answer_json(send, answer)


def serve_forever(port: int) -> None:
    """Run the fake on 127.0.0.1:port until killed."""
    run_app(fake_resend, port)


def fake_counts(url: str) -> dict[str, int]:
    """What the fake received so far."""
    counts: dict[str, int] = httpx.get(url + "/counts", timeout=10).json()
    return counts


# --- the firing ---------------------------------------------------------------------------


def worker_for(store_url: str, fake_url: str) -> tuple[Worker, FakeClock, Any]:
    """A worker a minute before the firing, sending to the fake; its clock and HTTP client."""
    clock = FakeClock(BEFORE)
    store = open_store(store_url, clock)
    client = make_client(max_connections=100)
    settings = ResendSettings(type="resend", api_key_env="KEY", base_url=fake_url)
    provider = ResendProvider("default", settings, {"api_key": "re_bench"}, client)
    return Worker(store, CTX, clock, Providers({"default": provider})), clock, client


def step(worker: Worker, clock: FakeClock) -> None:
    """Move the worker's clock across the firing and wake its loops."""
    clock.set(FIRING)
    worker.wake()


async def run_replica(store_url: str, fake_url: str) -> None:
    """One replica: the worker's loops until SIGTERM; SIGUSR1 steps its clock to the firing."""
    worker, clock, client = worker_for(store_url, fake_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, step, worker, clock)
    try:
        await worker.run_once()  # warmed up: catalog read, connections open
        print("ready", flush=True)
        await worker.run_forever(stop)
    finally:
        await client.aclose()
        await worker.store.close()


class Watch:
    """Polls the store's counts and the workers' resident size until everything is sent."""

    def __init__(self, url: str, matches: int, pids: list[int | str]) -> None:
        self.url, self.matches, self.pids = url, matches, pids
        self.before = sum(rss_mb(pid) for pid in pids)
        self.peak = self.before
        self.pending_s: float | None = None
        self.sent_s: float | None = None

    async def run(self, started: float, timeout: float) -> None:
        """Until every send is sent, or `timeout` seconds."""
        created = "SELECT count(*) FROM pending_sends WHERE automation_id = 'fan'"
        sent = created + " AND status = 'sent'"
        while time.perf_counter() - started < timeout:
            await asyncio.sleep(0.05)
            self.peak = max(self.peak, sum(rss_mb(pid) for pid in self.pids))
            now = time.perf_counter() - started
            if self.pending_s is None:
                if await asyncio.to_thread(count_sql, self.url, created) >= self.matches:
                    self.pending_s = now
                continue
            if await asyncio.to_thread(count_sql, self.url, sent) >= self.matches:
                self.sent_s = now
                return
        raise RuntimeError(f"not done after {timeout:g} s (pending at {self.pending_s})")


async def fire_in_process(url: str, fake_url: str, matches: int, timeout: float) -> Watch:
    """SQLite: one worker in this process."""
    worker, clock, client = worker_for(url, fake_url)
    stop = asyncio.Event()
    await worker.run_once()  # warmed up: catalog read, connections open
    loops = asyncio.create_task(worker.run_forever(stop))
    try:
        await asyncio.sleep(0.2)
        watch = Watch(url, matches, ["self"])
        started = time.perf_counter()
        step(worker, clock)
        await watch.run(started, timeout)
    finally:
        stop.set()
        await loops
        await client.aclose()
        await worker.store.close()
    return watch


async def fire_replicas(
    url: str, fake_url: str, matches: int, replicas: int, timeout: float
) -> Watch:
    """PostgreSQL: `replicas` worker processes on the one database."""
    command = [sys.executable, __file__, "--replica", url, "--fake", fake_url]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(replicas)]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise RuntimeError("a replica did not start")
        watch = Watch(url, matches, [p.pid for p in processes])
        started = time.perf_counter()
        for process in processes:
            process.send_signal(signal.SIGUSR1)
        await watch.run(started, timeout)
        return watch
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)


# --- one size, the report ----------------------------------------------------------------


async def measure(url: str, count: int, fake_url: str, replicas: int) -> dict[str, float]:
    """Load `count` subscribers, fire, send everything, then run the floor on the same data."""
    loaded = time.perf_counter()
    await seed(url, count)
    load_s = time.perf_counter() - loaded
    matches = (count + 9) // 10
    before = fake_counts(fake_url)
    timeout = 60 + count / 1000
    if url.startswith("sqlite"):
        watch = await fire_in_process(url, fake_url, matches, timeout)
    else:
        watch = await fire_replicas(url, fake_url, matches, replicas, timeout)
    after = fake_counts(fake_url)
    assert watch.pending_s is not None and watch.sent_s is not None
    return {
        "subscribers": count,
        "matches": matches,
        "load_s": load_s,
        "pending_s": watch.pending_s,
        "sent_s": watch.sent_s,
        "rss_mb": watch.peak - watch.before,
        "emails": after["emails"] - before["emails"],
        "duplicates": after["duplicates"] - before["duplicates"],
        "floor_s": floor(url, count),
    }


def report(runs: list[dict[str, float]], store: str, replicas: int) -> str:
    """The table: each size's rates next to the floor's, and the memory of each size."""
    who = "1 worker" if store == "sqlite" else f"{replicas} replicas"
    lines = [
        f"schedule fan-out on {store} ({who}), 10 % audience, fake Resend on 127.0.0.1",
        f"{'subscribers':>12}{'pending':>9}{'pending/s':>11}{'floor/s':>10}{'vs floor':>9}"
        f"{'all sent s':>11}{'sent/s':>9}{'emails':>8}{'dupes':>6}{'peak MB':>9}",
    ]
    for run in runs:
        rate = run["matches"] / run["pending_s"]
        floor_rate = run["matches"] / run["floor_s"]
        lines.append(
            f"{run['subscribers']:>12,.0f}{run['matches']:>9,.0f}{rate:>11,.0f}"
            f"{floor_rate:>10,.0f}{rate / floor_rate:>9.0%}{run['sent_s']:>11.1f}"
            f"{run['matches'] / run['sent_s']:>9,.0f}{run['emails']:>8,.0f}"
            f"{run['duplicates']:>6,.0f}{run['rss_mb']:>9.1f}"
        )
    last = runs[-1]
    target = "target >= 50,000" if store == "sqlite" else "the 50,000 target is SQLite's"
    lines.append(
        f"pending sends/s: {last['matches'] / last['pending_s']:,.0f} ({target});"
        f" emails at the fake == matches: {last['emails'] == last['matches']};"
        f" duplicates: {last['duplicates']:.0f}"
    )
    if len(runs) > 1:
        lines.append(
            f"memory: peak {runs[0]['rss_mb']:.1f} MB at {runs[0]['subscribers']:,.0f},"
            f" {last['rss_mb']:.1f} MB at {last['subscribers']:,.0f} subscribers (flat = close)"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def database(store: str) -> Iterator[Callable[[], str]]:
    """Fresh store URLs: files in a temporary folder, or databases on a throwaway server."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            names = iter(range(1_000))
            yield lambda: f"sqlite:///{folder}/fan{next(names)}.db"
        return
    from tests.pg import find_binaries, start_local_server

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL binaries not found (pg_ctl)")
    with contextlib.contextmanager(start_local_server)(binaries) as server:
        yield server.create_database


def main() -> int:
    """Start the fake, measure a tenth of the size then the size, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--short", action="store_true", help="a tiny smoke run")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--replica", help=argparse.SUPPRESS)
    parser.add_argument("--fake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever(args.serve)
        return 0
    if args.replica:
        asyncio.run(run_replica(args.replica, args.fake))
        return 0
    sizes = [2_000] if args.short else [args.subscribers // 10, args.subscribers]
    process, fake_url = start_fake(__file__)
    try:
        with database(args.store) as new_url:
            runs = [
                asyncio.run(measure(new_url(), size, fake_url, args.replicas)) for size in sizes
            ]
    finally:
        process.terminate()
        process.wait(10)
    print(report(runs, args.store, args.replicas))
    return 0 if all(r["emails"] == r["matches"] and not r["duplicates"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
