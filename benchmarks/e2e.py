"""End to end: client event -> `postwright serve` -> Resend adapter -> a fake Resend (issue 15).

Layout: `serve` (SQLite file store, one automation triggered by a client event, no wait,
sending through the Resend adapter) pinned to core 0; the fake Resend (uvicorn, its own
process) and this aiohttp load client pinned to core 1. 32 connections, every event a new
subscriber. Figures: emails/s delivered at the fake provider, events/s accepted, and at half
the delivered rate (paced open loop) p50/p99 from posting an event to the provider receiving
its email.

Baseline, same run, same layout (benchmarks/e2e_relay.py): a minimal aiohttp relay that appends
each event to SQLite with durable group commit (WAL, synchronous=FULL, one transaction per batch
of concurrent requests), then POSTs a Resend email to the same fake and answers after it.
Both servers run throughout and their throughput runs take turns (--rounds, the median round
counts), so a change in a shared machine's load hits both alike.

    .venv/bin/python benchmarks/e2e.py [--seconds 5 | --events N] [--rounds 3] [--short]
        [--profile OUT [--profile-gil]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from e2e_profile import sampling

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from tests.serving import stop  # noqa: E402

PYTHON = sys.executable
POSTWRIGHT = str(Path(PYTHON).parent / "postwright")
CONNECTIONS = 32
SERVER_CORE, CLIENT_CORE = 0, 1
EVENT_TYPE = "bench.signup"
AUTOMATION = f"""\
id: welcome
status: running
trigger: {{type: event, event: {EVENT_TYPE}}}
email:
  from: "Shop <news@shop.test>"
  subject: "Hi {{{{ event.data.n }}}}"
  html: "<p>Hello {{{{ subscriber.email }}}}, welcome</p>"
  text: "Hello {{{{ subscriber.email }}}}, welcome"
"""
CONFIG = """\
providers:
  default:
    type: resend
    api_key_env: BENCH_RESEND_API_KEY
    base_url: {base}
"""


def pin(core: int) -> None:
    """Keep this process on one core where the machine has it (two are assumed)."""
    with contextlib.suppress(OSError, AttributeError):
        available = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {core} if core < (os.cpu_count() or 1) else available)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, process: subprocess.Popen[bytes], path: str, timeout: float = 30) -> None:
    """Until an HTTP GET of `path` answers below 500 (or the process exits)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not answer within {timeout} s")


@contextlib.contextmanager
def running(
    command: list[str],
    port: int,
    log: Path,
    *,
    core: int,
    ready: str = "/",
    environ: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server pinned to `core` until the block ends; its output goes to `log`."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(environ or {})},
            preexec_fn=lambda: pin(core),
        )
        try:
            wait_port(port, process, ready)
            yield process
        except BaseException:
            print(f"server output ({log}):\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            stop(process)


# --- the load -------------------------------------------------------------------------------


@dataclass
class Figures:
    accepted_per_s: float
    emails_per_s: float
    events: int
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    latency_rate: float = 0.0


def event(run: str, n: int) -> bytes:
    """One client event of a new subscriber; `n` comes back in the email's subject."""
    body = {
        "id": f"{run}-{n}",
        "type": EVENT_TYPE,
        "subscriber": {"email": f"{run}-{n}@bench.test"},
        "data": {"n": n},
    }
    return json.dumps(body).encode()


async def arrivals(fake: str, session: aiohttp.ClientSession, dump: bool = False) -> Any:
    async with session.get(f"{fake}/arrivals", params={"dump": "1" if dump else "0"}) as answer:
        return await answer.json()


async def drain(fake: str, session: aiohttp.ClientSession, expected: int, timeout: float) -> None:
    """Until the fake has received `expected` emails (an error after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while (got := (await arrivals(fake, session))["count"]) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {got} of {expected} emails reached the provider")
        await asyncio.sleep(0.02)


async def flood(url: str, fake: str, seconds: float, events: int | None) -> Figures:
    """Closed loop, CONNECTIONS at once: events/s answered 202, emails/s until all delivered."""
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    accepted = 0
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(f"{fake}/reset") as answer:
            answer.raise_for_status()
        start = time.monotonic()
        stop = start + seconds

        async def client() -> None:
            nonlocal accepted
            while (n := next(counter)) < (events if events is not None else 10**9):
                if events is None and time.monotonic() >= stop:
                    return
                async with session.post(
                    url, data=event(run, n), headers={"Content-Type": "application/json"}
                ) as answer:
                    if answer.status != 202:
                        raise RuntimeError(f"event {n}: {answer.status} {await answer.text()}")
                    accepted += 1

        await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
        posted = time.monotonic() - start
        await drain(fake, session, accepted, timeout=max(60.0, seconds * 6))
        last = (await arrivals(fake, session, dump=True))["last"]
    return Figures(accepted / posted, accepted / (last - start), accepted)


async def paced(url: str, fake: str, rate: float, seconds: float) -> tuple[float, float]:
    """Open loop at `rate` events/s: (p50, p99) ms from the event's scheduled post to the
    provider receiving its email (scheduled, so a stalled server cannot hide its delay)."""
    run = uuid.uuid4().hex[:8]
    total = max(1, int(rate * seconds))
    scheduled: dict[int, float] = {}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(f"{fake}/reset") as answer:
            answer.raise_for_status()

        async def post(n: int) -> None:
            async with session.post(
                url, data=event(run, n), headers={"Content-Type": "application/json"}
            ) as answer:
                if answer.status != 202:
                    raise RuntimeError(f"event {n}: {answer.status}")

        tasks = []
        start = time.monotonic()
        for n in range(total):
            at = start + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled[n] = at
            tasks.append(asyncio.create_task(post(n)))
        await asyncio.gather(*tasks)
        await drain(fake, session, total, timeout=60)
        received = (await arrivals(fake, session, dump=True))["times"]
    latencies = sorted((received[str(n)] - scheduled[n]) * 1000 for n in range(total))
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted `values`."""
    return values[min(len(values) - 1, max(0, round(len(values) * fraction) - 1))]


async def measure(urls: dict[str, str], fake: str, args: argparse.Namespace) -> dict[str, Figures]:
    """Throughput runs of the systems taking turns (`--rounds` each, so a change in the
    machine's load hits both alike; the median round counts), then each one's latency run
    at half its own emails/s."""
    runs: dict[str, list[Figures]] = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            runs[name].append(await flood(url, fake, args.seconds, args.events))
    figures: dict[str, Figures] = {}
    for name, url in urls.items():
        ordered = sorted(runs[name], key=lambda run: run.emails_per_s)
        median = ordered[len(ordered) // 2]
        median.latency_rate = median.emails_per_s / 2
        latency_seconds = min(args.seconds, 10.0)
        if args.events is not None:
            latency_seconds = args.events / max(median.emails_per_s, 1)
        median.p50_ms, median.p99_ms = await paced(
            url, fake, median.latency_rate, max(1.0, min(latency_seconds, 10.0))
        )
        figures[name] = median
    return figures


# --- the two systems -------------------------------------------------------------------------


def serve_command(work: Path, fake: str, port: int) -> list[str]:
    """`postwright serve` on a new repository: one automation, the fake as its Resend."""
    repo = work / "repo"
    (repo / "automations").mkdir(parents=True)
    (repo / "automations" / "welcome.yaml").write_text(AUTOMATION)
    (repo / "postwright.yaml").write_text(CONFIG.format(base=fake))
    return [POSTWRIGHT, "serve", "--repo", str(repo), "--port", str(port)]


def run_all(args: argparse.Namespace, work: Path) -> tuple[Figures, Figures]:
    """The relay and serve side by side on the server core, one fake Resend; the figures of
    each (py-spy samples serve throughout with --profile)."""
    fake_port = free_port()
    fake = f"http://127.0.0.1:{fake_port}"
    helpers = [PYTHON, str(ROOT / "benchmarks" / "e2e_relay.py")]
    port, relay_port = free_port(), free_port()
    relay = [*helpers, "relay", str(relay_port), str(work / "relay.db"), fake]
    environ = {
        "BENCH_RESEND_API_KEY": "re_bench",
        "POSTWRIGHT_DATABASE_URL": f"sqlite:///{work / 'serve.db'}",
        # Accepting outruns sending for a while: the run measures both, so no 429.
        "POSTWRIGHT_HTTP_MAX_BACKLOG": "1000000000",
    }
    command = serve_command(work, fake, port)
    fake_command = [*helpers, "fake", str(fake_port)]
    with (
        running(fake_command, fake_port, work / "fake.log", core=CLIENT_CORE, ready="/arrivals"),
        running(relay, relay_port, work / "relay.log", core=SERVER_CORE, ready="/health"),
        running(
            command, port, work / "serve.log", core=SERVER_CORE, ready="/readyz", environ=environ
        ) as process,
        sampling(process.pid, args.profile, args.profile_gil),
    ):
        urls = {
            "relay": f"http://127.0.0.1:{relay_port}/",
            "serve": f"http://127.0.0.1:{port}/v1/events",
        }
        figures = asyncio.run(measure(urls, fake, args))
    return figures["relay"], figures["serve"]


def report(baseline: Figures, serve: Figures) -> bool:
    rows = [
        ("emails/s delivered at the provider", "emails_per_s", ",.0f"),
        ("events/s accepted", "accepted_per_s", ",.0f"),
        ("events in the throughput run", "events", ",d"),
        ("latency run rate (events/s, half the emails/s)", "latency_rate", ",.0f"),
        ("event -> provider p50 (ms)", "p50_ms", ".1f"),
        ("event -> provider p99 (ms)", "p99_ms", ".1f"),
    ]
    print(f"load: {os.getloadavg()[0]:.2f} (1-min load average at the end, {os.cpu_count()} CPUs)")
    print("throughput: the median of the rounds; the systems took turns")
    print(f"{'measure':<50}{'relay':>12}{'serve':>12}{'ratio':>8}")
    for name, field, fmt in rows:
        ours, theirs = getattr(serve, field), getattr(baseline, field)
        ratio = ours / theirs if theirs else float("nan")
        print(f"{name:<50}{theirs:>12{fmt}}{ours:>12{fmt}}{ratio:>8.2f}")
    share = serve.emails_per_s / baseline.emails_per_s
    met = share >= 0.5
    print(f"\nserve / relay emails/s {share:.2f} (target >= 0.50: {'met' if met else 'NOT met'})")
    fast = serve.p99_ms < 250
    print(f"serve p99 {serve.p99_ms:.1f} ms (target < 250: {'met' if fast else 'NOT met'})")
    summary = {"relay": baseline.__dict__, "serve": serve.__dict__, "ratio": share}
    print(json.dumps(summary), file=sys.stderr)
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of a throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per system")
    parser.add_argument("--events", type=int, help="post exactly N events instead of --seconds")
    parser.add_argument("--short", action="store_true", help="a smoke run (300 events)")
    parser.add_argument("--profile", type=Path, help="record serve with py-spy into this file")
    parser.add_argument(
        "--profile-gil", action="store_true", help="sample only the thread holding the GIL"
    )
    args = parser.parse_args()
    if args.short:
        args.events, args.seconds, args.rounds = 300, 1.0, 1
    pin(CLIENT_CORE)
    with tempfile.TemporaryDirectory(prefix="postwright-e2e-") as folder:
        baseline, serve = run_all(args, Path(folder))
    report(baseline, serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
