"""Building the worker a runner starts with: its context (time zone, public URL, unsubscribe
key) over the given providers.

Shared by `serve` (through runner.server.app) and `simulate`, so both run the same engine; the
settings are read by the caller (the engine never reads them itself).
"""

from __future__ import annotations

from datetime import timedelta

from runner.core.clock import Clock
from runner.engine.context import EngineContext, unsubscribe_key
from runner.engine.worker import EVENT_ID_RETENTION, SendMetrics, Worker
from runner.providers import Providers
from runner.store.base import Store


async def build_worker(
    store: Store,
    clock: Clock,
    providers: Providers,
    *,
    timezone: str,
    public_url: str,
    configured_key: bytes | None,
    event_id_retention: timedelta = EVENT_ID_RETENTION,
    metrics: SendMetrics | None = None,
) -> Worker:
    """The worker (nothing applied): the unsubscribe key is `configured_key`, else the one
    kept in the store (made on first start)."""
    key = await unsubscribe_key(configured_key, store)
    ctx = EngineContext(timezone, public_url, key)
    worker = Worker(store, ctx, clock, providers, metrics, event_id_retention=event_id_retention)
    await worker.count_backlog()  # what a previous run (or another replica) left
    return worker
