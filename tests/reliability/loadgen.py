"""An open-loop load generator for `POST /v1/events` on loopback, with sampling of the
server's memory (RSS), event backlog and send queue while it runs.

Requests leave on a fixed schedule (`rate` per second) whatever the answers, and each
latency is measured from its scheduled start, so a slow server cannot hide its slowness
by slowing the client down (coordinated omission). At most `MAX_OUTSTANDING` requests wait
at once; past that the schedule slips and `Window.achieved` tells by how much.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.reliability.served import Served

MAX_OUTSTANDING = 512
SAMPLE_EVERY = 0.25  # seconds between samples of memory and backlog
TIMEOUT = 30.0  # seconds one request may take before it counts as failed

Event = Callable[[int], dict[str, Any]]  # request number -> event body


@dataclass(frozen=True)
class Outcome:
    """One request: its event id, HTTP status (None: no answer) and Retry-After header."""

    event_id: str
    status: int | None
    latency: float  # seconds from its scheduled start to the answer
    retry_after: str | None


@dataclass(frozen=True)
class Sample:
    """The server at one moment of a window."""

    at: float  # seconds since the window started
    rss: int  # bytes
    backlog: int  # received events not processed yet
    sends: int  # sends not finished yet (pending or claimed)


@dataclass
class Window:
    """What one period of load at one rate produced."""

    rate: float  # requests per second offered
    seconds: float
    outcomes: list[Outcome] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    elapsed: float = 0.0  # seconds until the last answer

    @property
    def achieved(self) -> float:
        """Requests per second actually sent (answered or not)."""
        return len(self.outcomes) / max(self.elapsed, 1e-9)

    def statuses(self) -> dict[int | None, int]:
        """How many requests got each status (None: no answer)."""
        counts: dict[int | None, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def acknowledged(self) -> list[str]:
        """Ids of the events answered 202."""
        return [o.event_id for o in self.outcomes if o.status == 202]

    def latency(self, quantile: float, status: int = 202) -> float:
        """A latency quantile (seconds) of the requests answered `status`."""
        values = sorted(o.latency for o in self.outcomes if o.status == status)
        if len(values) < 2:
            return values[0] if values else 0.0
        return statistics.quantiles(values, n=1000, method="inclusive")[int(quantile * 1000) - 1]


async def offer(served: Served, rate: float, seconds: float, event: Event) -> Window:
    """Offer `rate` events per second for `seconds` to `served`, sampling it meanwhile."""
    window = Window(rate, seconds)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    connector = aiohttp.TCPConnector(limit=MAX_OUTSTANDING)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.monotonic()
        done = asyncio.Event()
        sampler = asyncio.create_task(_sample(session, served, window, started, done))
        slots = asyncio.Semaphore(MAX_OUTSTANDING)
        tasks: list[asyncio.Task[None]] = []
        for number in range(int(rate * seconds)):
            scheduled = started + number / rate
            pause = scheduled - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            await slots.acquire()
            body = event(number)
            tasks.append(asyncio.create_task(_post(session, served, body, scheduled, window)))
            tasks[-1].add_done_callback(lambda _: slots.release())
        await asyncio.gather(*tasks)
        window.elapsed = time.monotonic() - started
        done.set()
        await sampler
    return window


async def _post(
    session: aiohttp.ClientSession,
    served: Served,
    body: dict[str, Any],
    scheduled: float,
    window: Window,
) -> None:
    status: int | None = None
    retry_after = None
    try:
        async with session.post(f"{served.url}/v1/events", json=body) as answer:
            await answer.read()
            status, retry_after = answer.status, answer.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError):
        pass  # no answer: the event is not acknowledged
    latency = time.monotonic() - scheduled
    window.outcomes.append(Outcome(body["id"], status, latency, retry_after))


async def _sample(
    session: aiohttp.ClientSession,
    served: Served,
    window: Window,
    started: float,
    done: asyncio.Event,
) -> None:
    while not done.is_set():
        backlog = await gauge(session, served, "postwright_events_backlog")
        sends = await gauge(session, served, "postwright_queue_depth")
        at = time.monotonic() - started
        window.samples.append(Sample(at, served.rss_bytes(), backlog, sends))
        try:
            await asyncio.wait_for(done.wait(), SAMPLE_EVERY)
        except TimeoutError:
            pass


async def gauge(session: aiohttp.ClientSession, served: Served, name: str) -> int:
    """A gauge of the server's /metrics without labels (postwright_events_backlog: events
    waiting for its engine; postwright_queue_depth: sends not finished)."""
    async with session.get(f"{served.url}/metrics") as answer:
        text = await answer.text()
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found is not None, f"{name} is missing from /metrics"
    return int(float(found.group(1)))
