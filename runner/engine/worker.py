"""The engine loops: scheduler and event processing in one, the sender in another.

The worker keeps the `Catalog` of applied automations and rebuilds it whenever
meta "catalog_revision" changes. Rounds of one kind never overlap (a lock each), so
tests may call `drain()` while the background loops run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from enum import Enum
from typing import Protocol

from runner.core.clock import Clock
from runner.engine import events, scheduler, sender
from runner.engine.backlog import Backlog
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from runner.engine.status_changes import REVISION_META
from runner.errors import PostwrightError
from runner.providers import Providers
from runner.store.base import ReadTx, Store, WriteTx
from runner.store.errors import StoreUnavailable

log = logging.getLogger("postwright.worker")

EVENT_ID_RETENTION = timedelta(days=30)  # Config.event_id_retention's default
_PURGE_EVERY = timedelta(hours=1)
# Events processed per write transaction: small enough that an ingest never waits long
# for the single writer, large enough to amortise the transaction.
PROCESS_BATCH = 200
COALESCE_SECONDS = 0.01
# Engine rounds in a row that skip their tick while another replica holds the engine lock,
# before one waits for it.
SKIPPED_TICKS = 20
# How long a request waits for the events received before it (read your writes), and how
# often it looks again while another replica holds the engine lock.
CATCH_UP_SECONDS = 10.0
_BUSY_PAUSE = 0.005


class NotCaughtUp(PostwrightError):
    """Events received before a request still waited when its time ran out (HTTP 503)."""


class LatencyHistogram(Protocol):
    """A histogram of delays in seconds."""

    def observe(self, amount: float) -> None:
        """Record one delay."""


class SendMetrics(Protocol):
    """What the worker records: the delay from a send's due time to its hand-over (the server's
    Prometheus `Metrics` is one)."""

    @property
    def send_latency(self) -> LatencyHistogram:
        """Due time to hand-over, in seconds."""


class _Help(Enum):
    DONE = "done"  # nothing up to the mark waits any more
    PROGRESS = "progress"  # one batch processed here
    BUSY = "busy"  # another transaction (replica) is processing


class Worker:
    """Runs the engine over one store with one clock."""

    def __init__(
        self,
        store: Store,
        ctx: EngineContext,
        clock: Clock,
        providers: Providers,
        metrics: SendMetrics | None = None,
        *,
        event_id_retention: timedelta = EVENT_ID_RETENTION,
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.clock = clock
        self.providers = providers
        self.metrics = metrics
        self._catalog: Catalog | None = None
        self._revision: str | None = None
        self._catalog_lock = asyncio.Lock()  # one rebuild at a time
        self._engine_lock = asyncio.Lock()  # rounds of one kind never overlap
        self._send_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._send_wake = asyncio.Event()
        self.event_id_retention = event_id_retention
        self._purged_at: datetime | None = None
        self.catch_up_seconds = CATCH_UP_SECONDS
        self.backlog = Backlog()  # read by load shedding on every POST /v1/events
        self._sweeping = False  # the last tick left a sweep unfinished
        self._skipped = 0  # ticks skipped in a row: another replica held the engine lock

    def wake(self) -> None:
        """Start the next rounds now (called after an ingest or a trigger)."""
        self._wake.set()
        self._send_wake.set()

    async def catalog(self) -> Catalog:
        """The catalog of the applied automations, rebuilt when their revision changed."""
        revision = await self.store.read(lambda tx: tx.meta(REVISION_META))
        if self._catalog is not None and revision == self._revision:
            return self._catalog
        # After a reload the engine round, the send round and the watcher all ask at once:
        # one of them rebuilds (reading every applied row), the others wait for its result.
        async with self._catalog_lock:
            revision = await self.store.read(lambda tx: tx.meta(REVISION_META))
            if self._catalog is None or revision != self._revision:
                previous = self._catalog
                self._revision, catalog = await self.store.read(lambda tx: _build(tx, previous))
                self._catalog = catalog
            return self._catalog

    def _still_sweeping(self) -> bool:
        """Whether the last tick left a sweep unfinished."""
        return self._sweeping

    async def run_once(self) -> bool:
        """One engine round, then one send round; True when either did any work."""
        engine = await self.engine_round()
        sent = await self.send_round()
        return engine or sent

    async def engine_round(self) -> bool:
        """Scheduler tick and event processing (each under the engine lock); True on work."""
        async with self._engine_lock:
            catalog = await self.catalog()
            now = self.clock.now()
            if self.backlog.recount_due(now):  # before waiting for another replica's lock
                await self.count_backlog()
            # Replicas do not queue for the engine lock to tick: while another holds it (a
            # sweep goes on there at once) this one sends instead, waiting for the lock
            # only after SKIPPED_TICKS skipped rounds in a row, so it still ticks for sure.
            wait = self._skipped >= SKIPPED_TICKS
            ticked = await self.store.write(
                lambda tx: scheduler.run_tick(
                    tx, catalog, self.ctx, now, seconds=scheduler.TICK_SECONDS, wait=wait
                )
            )
            self._skipped = self._skipped + 1 if ticked.skipped else 0
            if ticked.skipped:
                return False  # the holder processes the events too
            if ticked.changed:
                catalog = await self.catalog()
            mark = self.backlog.mark()
            processed = await self.store.write(
                lambda tx: events.process_pending(tx, catalog, self.ctx, limit=PROCESS_BATCH)
            )
            self.backlog.processed(processed, drained=processed < PROCESS_BATCH, mark=mark)
            await self._purge(now)  # housekeeping: not work that calls for another round
            if ticked.changed or ticked.handled or processed:
                self._send_wake.set()  # new sends may be due now
            # An unfinished sweep is work: the next tick comes at once, not after the interval
            # and not even after the coalescing pause (the sends it made go out meanwhile).
            self._sweeping = ticked.more
            return bool(ticked.changed or ticked.more or processed)

    async def send_round(self) -> bool:
        """Claim and send due sends; never waits for the engine lock. True on work."""
        async with self._send_lock:
            catalog = await self.catalog()
            # The delays come from the round's own outcomes: no store read for a metric.
            observe = None if self.metrics is None else self.metrics.send_latency.observe
            sent = await sender.send_due(
                self.store, catalog, self.ctx, self.providers, self.clock.now(), observe=observe
            )
            return bool(sent)

    async def count_backlog(self) -> None:
        """Set the load-shedding backlog to the store's count of unprocessed events (at
        start-up, then at most once a second): it covers what other replicas stored and
        processed, and what a previous run left."""

        def count(tx: ReadTx) -> tuple[int, int]:
            # The mark is taken in the reading thread just before the count's snapshot, so
            # only events committed but not yet announced by their request are counted twice.
            return self.backlog.mark(), tx.unprocessed_count()

        mark, unprocessed = await self.store.read(count)
        self.backlog.counted(unprocessed, mark=mark, now=self.clock.now())

    async def catch_up(self) -> None:
        """Return once every event committed before this call has been processed: processed
        here, or by another replica holding the engine lock meanwhile. NotCaughtUp after
        `catch_up_seconds`.

        Requests call it before they read or act on subscribers, so an event answered 202
        just before is always seen (read your writes), whichever replica took it.
        """

        def look(tx: ReadTx) -> tuple[int, bool]:
            mark = tx.last_event_seq()
            return mark, tx.has_unprocessed(mark)

        mark, waiting = await self.store.read(look)
        if not waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.catch_up_seconds
        while True:
            step = functools.partial(
                _help, catalog=await self.catalog(), ctx=self.ctx, through=mark
            )
            added = self.backlog.mark()
            state, processed = await self.store.write(step)
            if state is _Help.PROGRESS:
                drained = processed < PROCESS_BATCH
                self.backlog.processed(processed, drained=drained, mark=added)
                self.wake()  # what it made (sends due now) is the background loop's to send
            if state is _Help.DONE:
                return
            if loop.time() >= deadline:
                raise NotCaughtUp(
                    f"events received up to #{mark} were still being processed after "
                    f"{self.catch_up_seconds:g} s"
                )
            if state is _Help.BUSY:
                await asyncio.sleep(_BUSY_PAUSE)

    async def _purge(self, now: datetime) -> None:
        """Forget event ids past their retention, at most once an hour."""
        if self._purged_at is not None and now - self._purged_at < _PURGE_EVERY:
            return
        self._purged_at = now
        before = now - self.event_id_retention
        purged = await self.store.write(lambda tx: tx.purge_event_ids(before))
        # Shared rate-limit slots are claims of a window long gone (runner.engine.shared_rate).
        await self.store.write(lambda tx: tx.purge_claims("rate:", now - _PURGE_EVERY))
        if purged:
            log.info("forgot %d event ids received before %s", purged, before.isoformat())

    async def drain(self, max_rounds: int = 100) -> int:
        """Run rounds until one does nothing; returns the rounds that did work."""
        for done in range(max_rounds):
            if not await self.run_once():
                return done
        raise RuntimeError(f"the worker still had work after {max_rounds} rounds")

    async def run_forever(self, stop: asyncio.Event, interval: float = 0.05) -> None:
        """Engine rounds and send rounds, side by side, until `stop` is set.

        They run apart so that sending never waits behind event processing: on PostgreSQL
        another replica may hold the engine lock for a while (a stopped replica holds it
        until the server ends its session), and due sends still go out meanwhile.
        """
        await asyncio.gather(
            _loop("engine", self.engine_round, self._wake, stop, interval, self._still_sweeping),
            _loop("send", self.send_round, self._send_wake, stop, interval),
        )


def _help(tx: WriteTx, catalog: Catalog, ctx: EngineContext, through: int) -> tuple[_Help, int]:
    """One step of catching up to `through`: process a batch unless nothing waits or another
    transaction holds the engine lock (then the caller looks again shortly); with the
    number of events processed."""
    if not tx.has_unprocessed(through):
        return _Help.DONE, 0
    if not tx.try_lock_engine():
        return _Help.BUSY, 0
    return _Help.PROGRESS, events.process_pending(tx, catalog, ctx, limit=PROCESS_BATCH)


async def _loop(
    name: str,
    round_: Callable[[], Awaitable[bool]],
    wake: asyncio.Event,
    stop: asyncio.Event,
    interval: float,
    at_once: Callable[[], bool] = lambda: False,
) -> None:
    """Rounds until `stop` is set; a failed round is logged and the loop goes on. A busy
    round is followed by the next one after a short pause, or at once when `at_once()`."""
    while not stop.is_set():
        # Cleared before the round: a wake-up during it starts another one.
        wake.clear()
        try:
            busy = await round_()
        except StoreUnavailable as error:  # rolled back whole; the next round retries it
            log.warning("%s round rolled back, retrying: %s", name, error)
            busy = False
        except Exception:
            log.exception("%s round failed; retrying", name)
            busy = False
        if busy and at_once():
            await asyncio.sleep(0)  # the other loop's rounds still take turns with this one
            continue
        if busy:
            # Let events arriving meanwhile join the next round: bigger rounds cost
            # less per event and leave the single writer to the ingests in between.
            await asyncio.sleep(COALESCE_SECONDS)
            continue
        waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


def _build(tx: ReadTx, previous: Catalog | None) -> tuple[str | None, Catalog]:
    revision = tx.meta(REVISION_META)
    # "" for a store no reload has written yet: still a revision the sender can compare.
    catalog = Catalog.build(
        tx.automations(), tx.status_changes(), previous, revision=revision or ""
    )
    return revision, catalog
