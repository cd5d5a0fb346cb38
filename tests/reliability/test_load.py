"""Sustained load and overload of a real `postwright serve` on loopback (SQLite file).

A short ramp finds the highest rate at which the engine keeps up (its backlog stays
bounded); a fresh server then takes that rate for a while (memory flat, p99 reported) and
twice that rate for as long: it sheds with 429 and `Retry-After`, its memory and backlog
stay bounded, and every event it acknowledged is stored and processed (one email each).
`make test` runs seconds of it with loose bounds; `make reliability` a minute per phase.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from runner.cli.settings import load_settings
from runner.store.base import ReadTx, Stats
from tests.harness import write_repo
from tests.reliability.intensity import pick
from tests.reliability.loadgen import Event, Window, gauge, offer
from tests.reliability.served import Served, served, wait_until
from tests.reliability.store_reader import read_store

pytestmark = pytest.mark.reliability

STEP_SECONDS = pick(1.0, 4.0)  # each step of the ramp
WARM_SECONDS = pick(1.0, 5.0)  # at the held rate before measuring (caches, allocator)
HOLD_SECONDS = pick(5.0, 60.0)  # the held rate, then as long at twice it
FIRST_RATE = pick(250.0, 100.0)  # events/s; times RAMP_FACTOR while the engine keeps up
RAMP_FACTOR = pick(2.0, 1.5)
LAST_RATE = 8000.0  # beyond what one Python client process can offer
MiB = 1 << 20
# Resident memory: growth from the first to the last third of the held rate, and the peak
# under overload above the peak under the held rate.
FLAT_MEMORY = pick(48 * MiB, 24 * MiB)
OVERLOAD_MEMORY = pick(96 * MiB, 64 * MiB)
# Seconds to finish the work after overload: the engine takes events faster than the sender
# sends, and only the events are shed, so minutes of overload leave minutes of sending.
SETTLE = pick(60.0, 240.0)
MAX_IN_FLIGHT = 256  # postwright.yaml http.max_in_flight's default
# The held rate, measured in short ramp steps, may lose a little to other processes on a
# shared machine over a longer hold: `make test` tolerates it, `make reliability` does not.
HELD_ACCEPTED = pick(0.9, 0.99)  # share of the held rate's events answered 202
# `make test`'s one-second ramp steps let a burst pass for sustainable (a clean-clone CI run
# held 1,414/s for a second, then answered only 84 % of it with 202 over five): it holds a
# quarter below the ramp's figure. The long run's four-second steps hold at the figure.
HOLD_SHARE = pick(0.75, 1.0)
SIGNUP = """\
id: signup-mail
status: running
retrigger: true
trigger: {type: event, event: signup}
email:
  from: "Shop <news@shop.test>"
  subject: Welcome
  text: "Hello {{ subscriber.email }}"
"""


def signups(phase: str) -> Event:
    """Signup events of 2,000 recurring subscribers, ids unique to `phase`."""
    return lambda number: {
        "id": f"{phase}-{number}",
        "type": "signup",
        "subscriber": {"email": f"u{number % 2000}@load.test"},
    }


def load(served: Served, rate: float, seconds: float, phase: str) -> Window:
    return asyncio.run(offer(served, rate, seconds, signups(phase)))


def kept_up(window: Window) -> bool:
    """Every event accepted at the offered rate, and over the second half of the window
    the events waiting for the engine and the sends waiting for the sender bounded (at
    most half a second of events each, or 200): the whole way to the email keeps up."""
    late = [s for s in window.samples if s.at >= window.seconds / 2]
    bound = max(200.0, window.rate / 2)
    return (
        window.achieved >= 0.95 * window.rate
        and window.statuses() == {202: len(window.outcomes)}
        and all(s.backlog <= bound and s.sends <= bound for s in late)
    )


def settle(served: Served) -> None:
    """Wait until every event received is processed and every email sent (bounded)."""

    async def waiting() -> tuple[int, int]:
        async with aiohttp.ClientSession() as session:
            backlog = await gauge(session, served, "postwright_events_backlog")
            return backlog, await gauge(session, served, "postwright_queue_depth")

    wait_until(
        lambda: asyncio.run(waiting()) == (0, 0),
        lambda: (
            f"the engine did not catch up: {asyncio.run(waiting())} (backlog, sends) left\n"
            + served.log_tail()
        ),
        SETTLE,
    )


def ramp(served: Served) -> tuple[float, list[Window]]:
    """The highest rate the engine keeps up with, from rates growing by RAMP_FACTOR and one
    step between the last that held and the first that did not; every window run."""
    windows: list[Window] = []

    def holds(rate: float) -> bool:
        windows.append(load(served, rate, STEP_SECONDS, f"ramp{len(windows)}"))
        settle(served)
        return kept_up(windows[-1])

    best, rate = 0.0, FIRST_RATE
    while rate <= LAST_RATE and holds(rate):
        best, rate = rate, rate * RAMP_FACTOR
    assert best > 0, f"the engine did not keep up with {FIRST_RATE:g} events/s"
    between = math.sqrt(best * rate)
    if rate <= LAST_RATE and holds(between):
        best = between
    return best, windows


def median_rss(window: Window, start: float, end: float) -> float:
    """Median resident memory over a fraction [start, end) of the window."""
    values = [s.rss for s in window.samples if start <= s.at / window.seconds < end]
    return statistics.median(values)


def figures(rate: float, hold: Window, over: Window, bound: int) -> str:
    """The lines for docs/reliability.md."""
    rss = [s.rss for s in hold.samples]
    statuses = over.statuses()
    return (
        f"held {rate:,.0f} events/s for {hold.seconds:g} s ({hold.achieved:,.0f}/s sent): "
        f"p50 {hold.latency(0.5) * 1000:.1f} ms, p99 {hold.latency(0.99) * 1000:.1f} ms, "
        f"peak backlog {max(s.backlog for s in hold.samples):,} events and "
        f"{max(s.sends for s in hold.samples):,} sends, RSS {min(rss) / MiB:.0f}-"
        f"{max(rss) / MiB:.0f} MiB (median of the first third "
        f"{median_rss(hold, 0, 1 / 3) / MiB:.1f}, of the last "
        f"{median_rss(hold, 2 / 3, 1.01) / MiB:.1f})\ntwice it for {over.seconds:g} s "
        f"({over.achieved:,.0f}/s sent, max_backlog {bound:,}): "
        f"{statuses.get(202, 0):,} x 202 (p99 {over.latency(0.99) * 1000:.1f} ms), "
        f"{statuses.get(429, 0):,} x 429 (p99 {over.latency(0.99, 429) * 1000:.1f} ms), "
        f"{statuses.get(503, 0):,} x 503, {statuses.get(None, 0):,} unanswered; peak backlog "
        f"{max(s.backlog for s in over.samples):,} events, send queue at the end "
        f"{over.samples[-1].sends:,}, RSS peak {max(s.rss for s in over.samples) / MiB:.0f} MiB"
    )


def stored(ids: list[str]) -> Callable[[ReadTx], tuple[list[str], bool, Stats]]:
    """Ids missing from the store, whether events wait unprocessed, and the automation's
    counts."""

    def look(tx: ReadTx) -> tuple[list[str], bool, Stats]:
        missing = [i for i in ids if tx.event_by_id(i) is None]
        return missing, tx.has_unprocessed(tx.last_event_seq()), tx.stats("signup-mail")

    return look


def test_twice_the_sustainable_rate_is_shed_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    repo = write_repo(tmp_path / "repo", {"signup-mail": SIGNUP})
    log = tmp_path / "serve.log"
    with served(repo, log) as server:
        ramped, windows = ramp(server)
        server.stop()
    rate = ramped * HOLD_SHARE
    print("ramp:", ", ".join(f"{w.rate:,.0f}/s {'ok' if kept_up(w) else 'no'}" for w in windows))
    bound = max(200, round(rate))  # a second of the sustainable rate
    with served(repo, log, {"POSTWRIGHT_HTTP_MAX_BACKLOG": str(bound)}) as server:
        windows.append(load(server, rate, WARM_SECONDS, "warm"))
        hold = load(server, rate, HOLD_SECONDS, "hold")
        over = load(server, 2 * rate, HOLD_SECONDS, "over")
        overloaded = time.monotonic()
        settle(server)
        print(f"the work left by the overload was done {time.monotonic() - overloaded:.1f} s later")
        server.stop()
    print(figures(rate, hold, over, bound))

    assert hold.statuses().get(202, 0) >= HELD_ACCEPTED * len(hold.outcomes), hold.statuses()
    assert max(s.backlog for s in hold.samples) <= pick(bound + MAX_IN_FLIGHT, bound - 1)
    growth = median_rss(hold, 2 / 3, 1.01) - median_rss(hold, 0, 1 / 3)
    assert growth <= FLAT_MEMORY, f"memory grew {growth / MiB:.1f} MiB at a steady rate"

    statuses = over.statuses()
    assert set(statuses) <= {202, 429, 503, None}, statuses
    assert statuses.get(429, 0) + statuses.get(503, 0) > 0, "twice the rate was never shed"
    refusals = [o for o in over.outcomes if o.status in (429, 503)]
    assert all(o.retry_after is not None and o.retry_after.isdigit() for o in refusals)
    # Client events: shedding starts at the bound, requests already past the gate add at
    # most the in-flight bound, and a recount may count those being committed twice for a
    # moment. The backlog also holds the internal `email.*` events of sends, which are never
    # shed: they come at the sending rate (about the sustainable rate, a bound a second).
    assert max(s.backlog for s in over.samples) <= 2 * bound + 2 * MAX_IN_FLIGHT
    peak = max(s.rss for s in over.samples) - max(s.rss for s in hold.samples)
    assert peak <= OVERLOAD_MEMORY, f"memory rose {peak / MiB:.1f} MiB under overload"

    acknowledged = [i for w in [*windows, hold, over] for i in w.acknowledged()]
    unanswered = sum(w.statuses().get(None, 0) for w in [*windows, hold, over])
    url = load_settings(repo, {}).database_url
    missing, waiting, counts = read_store(url, stored(acknowledged))
    print(
        f"{len(acknowledged):,} events acknowledged in all, {len(missing)} of them missing; "
        f"{counts.triggered:,} triggered the automation, {counts.sent:,} emails sent"
    )
    assert missing == [], f"{len(missing)} acknowledged events are not stored"
    assert not waiting, "events were left unprocessed"
    assert len(acknowledged) <= counts.triggered <= len(acknowledged) + unanswered
    assert counts.sent == counts.triggered  # one email each
