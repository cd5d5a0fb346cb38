"""Ingest benchmark: events/s accepted by `POST /v1/events`, event-to-outbox latency,
and finding due sends among 1,000,000 pending ones.

One run, loopback only, bounded in time. Load comes from `wrk` (Debian package
`wrk`; a Python client cannot produce the rate). Figures are printed next to a
baseline measured in the same run: a bare ASGI app on uvicorn that stores each
body in SQLite with the same durability and group commit
(benchmarks/ingest_baseline.py).

    .venv/bin/python benchmarks/ingest.py [--seconds 10] [--skip-due]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
POSTWRIGHT = str(Path(PYTHON).parent / "postwright")

SINGLE_LUA = """
local counter = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) prefix = tostring(tid) .. "-" .. tostring(math.random(1, 1000000000)) end
request = function()
  counter = counter + 1
  local body = string.format(
    '{"id":"%s-%d","type":"page.viewed","subscriber":{"email":"u%d@bench.test"},"data":{"n":%d}}',
    prefix, counter, counter % 5000, counter)
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, body)
end
"""

BATCH_LUA = """
local counter = 0
local threads = 0
function setup(thread) thread:set("tid", threads); threads = threads + 1 end
function init(args) prefix = tostring(tid) .. "-" .. tostring(math.random(1, 1000000000)) end
request = function()
  local events = {}
  for i = 1, 100 do
    counter = counter + 1
    events[i] = string.format(
      '{"id":"%s-%d","type":"page.viewed","subscriber":{"email":"u%d@bench.test"},"data":{"n":%d}}',
      prefix, counter, counter % 5000, counter)
  end
  local body = '{"events":[' .. table.concat(events, ",") .. ']}'
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, body)
end
"""

LATENCY_AUTOMATION = """\
id: ping-reply
status: running
trigger: {type: event, event: bench.ping}
email:
  from: "Bench <bench@shop.postwright.dev>"
  subject: "Pong {{ event.data.n }}"
  text: "Pong {{ event.data.n }} for {{ subscriber.email }}"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def running(
    command: list[str], ready_url: str, env: dict[str, str] | None = None
) -> Iterator[None]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    try:
        wait_ready(ready_url)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wrk(url: str, script: str, seconds: int, connections: int = 64) -> float:
    """Requests per second that wrk measured (2 threads, `connections` connections)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", lua.name, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        os.unlink(lua.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    if non_2xx:
        print(f"  warning: {non_2xx.group(1)} responses were not 2xx", file=sys.stderr)
    return float(match.group(1))


def make_repo(folder: Path, automation: str | None) -> Path:
    repo = folder / "repo"
    (repo / "automations").mkdir(parents=True)
    if automation is not None:
        (repo / "automations" / "ping-reply.yaml").write_text(automation)
    return repo


def serve_command(repo: Path, port: int) -> list[str]:
    return [POSTWRIGHT, "serve", "--repo", str(repo), "--port", str(port)]


def measure_throughput(seconds: int, work: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    port = free_port()
    database = work / "baseline.db"
    baseline = [PYTHON, str(ROOT / "benchmarks" / "ingest_baseline.py"), str(database), str(port)]
    with running(baseline, f"http://127.0.0.1:{port}/"):
        figures["baseline"] = wrk(f"http://127.0.0.1:{port}/v1/events", SINGLE_LUA, seconds)
    repo = make_repo(work / "throughput", None)
    port = free_port()
    with running(serve_command(repo, port), f"http://127.0.0.1:{port}/healthz"):
        url = f"http://127.0.0.1:{port}/v1/events"
        figures["single"] = wrk(url, SINGLE_LUA, seconds)
        figures["batch_requests"] = wrk(url, BATCH_LUA, seconds, connections=16)
    figures["batch_events"] = figures["batch_requests"] * 100
    return figures


def measure_latency(seconds: int, work: Path, rate: int = 100) -> list[float]:
    """Event accepted -> outbox message stored, in ms, at `rate` events/s."""
    repo = make_repo(work / "latency", LATENCY_AUTOMATION)
    port = free_port()
    with running(serve_command(repo, port), f"http://127.0.0.1:{port}/healthz"):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            start = time.monotonic()
            for n in range(rate * seconds):
                target = start + n / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                event = {
                    "id": f"ping-{n}",
                    "type": "bench.ping",
                    "subscriber": {"email": f"p{n}@bench.test"},
                    "data": {"n": n},
                }
                client.post("/v1/events", json=event).raise_for_status()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                total = len(
                    client.get("/v1/outbox", params={"limit": rate * seconds}).json()["messages"]
                )
                if total >= rate * seconds:
                    break
                time.sleep(0.2)
    return asyncio.run(_latencies(repo / ".postwright" / "postwright.db"))


async def _latencies(database: Path) -> list[float]:
    from runner.clock import SystemClock
    from runner.store import open_store

    store = open_store(f"sqlite:///{database}", SystemClock())
    try:

        def read(tx: object) -> list[float]:
            messages = tx.messages(1_000_000)  # type: ignore[attr-defined]
            result = []
            for message in messages:
                send = tx.pending_send(message.pending_send_id)  # type: ignore[attr-defined]
                result.append((message.sent_at - send.trigger_at).total_seconds() * 1000)
            return result

        return await store.read(read)
    finally:
        await store.close()


def measure_due_query(work: Path, pending: int = 1_000_000) -> tuple[float, float, float]:
    """(median ms to claim 100 due sends, ms to find none due, RSS growth MiB)."""
    return asyncio.run(_due_query(work / "due.db", pending))


async def _due_query(database: Path, pending: int) -> tuple[float, float, float]:
    from runner.clock import FakeClock
    from runner.store import open_store
    from runner.store.records import PendingSend, SendStatus

    now = datetime(2027, 1, 1, tzinfo=UTC)
    store = open_store(f"sqlite:///{database}", FakeClock(now))
    try:
        chunk = 50_000
        for start in range(0, pending, chunk):

            def insert(tx: object, start: int = start) -> None:
                for n in range(start, min(start + chunk, pending)):
                    due = now + timedelta(seconds=60 + n)  # all in the future but the last 100
                    if n >= pending - 100:
                        due = now - timedelta(seconds=1)
                    tx.insert_pending(  # type: ignore[attr-defined]
                        PendingSend(
                            id=f"s{n:09d}",
                            automation_id="bench",
                            subscriber_id=1,
                            email="b@bench.test",
                            due_at=due,
                            status=SendStatus.PENDING,
                            trigger_at=now,
                            trigger_event={"name": "bench"},
                            created_at=now,
                            series_id=f"s{n:09d}",
                        )
                    )

            await store.write(insert)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        timings = []

        class Rollback(Exception):
            pass

        for _ in range(5):
            started = time.perf_counter()

            def claim(tx: object) -> None:
                tx.claim_due(now, 100, now + timedelta(seconds=60), "bench")  # type: ignore[attr-defined]
                raise Rollback

            with contextlib.suppress(Rollback):
                await store.write(claim)
            timings.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()

        def none_due(tx: object) -> None:
            tx.claim_due(now - timedelta(days=1), 100, now, "bench")  # type: ignore[attr-defined]
            raise Rollback

        with contextlib.suppress(Rollback):
            await store.write(none_due)
        empty = (time.perf_counter() - started) * 1000
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return statistics.median(timings), empty, (after - before) / 1024
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    parser.add_argument("--skip-due", action="store_true", help="skip the 1,000,000-row query")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="postwright-ingest-") as folder:
        work = Path(folder)
        figures = measure_throughput(args.seconds, work)
        latencies = measure_latency(args.seconds, work)
        due = None if args.skip_due else measure_due_query(work)
    single_ratio = figures["single"] / figures["baseline"]
    batch_ratio = figures["batch_events"] / figures["single"]
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{'measure':<52}{'figure':>14}")
    print(f"{'baseline: bare ASGI + SQLite group commit (req/s)':<52}{figures['baseline']:>14,.0f}")
    print(f"{'postwright single events (events/s)':<52}{figures['single']:>14,.0f}")
    print(f"{'postwright batches of 100 (events/s)':<52}{figures['batch_events']:>14,.0f}")
    print(f"{'event -> outbox at 100 events/s, p50 (ms)':<52}{p50:>14.1f}")
    print(f"{'event -> outbox at 100 events/s, p99 (ms)':<52}{p99:>14.1f}")
    if due is not None:
        print(f"{'claim 100 due of 1,000,000 pending (ms, median)':<52}{due[0]:>14.2f}")
        print(f"{'find none due among 1,000,000 pending (ms)':<52}{due[1]:>14.2f}")
        print(f"{'RSS growth during the due queries (MiB)':<52}{due[2]:>14.1f}")
    print()
    checks = [
        ("single / baseline", f"{single_ratio:.2f}", ">= 0.5", single_ratio >= 0.5),
        ("batch / single", f"{batch_ratio:.1f}", ">= 10", batch_ratio >= 10),
        ("p99 latency (ms)", f"{p99:.1f}", "< 250", p99 < 250),
    ]
    if due is not None:
        checks.append(("due query (ms)", f"{due[0]:.2f}", "< 10", due[0] < 10))
    for name, value, target, ok in checks:
        print(f"{name:<20}{value:>10}  (target {target}: {'met' if ok else 'NOT met'})")
    print(
        json.dumps({"figures": figures, "p50_ms": p50, "p99_ms": p99, "due": due}), file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
