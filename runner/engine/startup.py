"""Building the worker a runner starts with: its unsubscribe key, providers and rate limits.

Shared by `serve` (through runner.server.app) and `simulate`, so both run the same engine.
"""

from __future__ import annotations

from datetime import timedelta

from runner.core.clock import Clock
from runner.core.settings import Settings
from runner.engine.context import EngineContext, unsubscribe_key
from runner.engine.shared_rate import SharedRateLimiter
from runner.engine.worker import SendMetrics, Worker
from runner.providers import build_providers
from runner.store import POSTGRES_PREFIX
from runner.store.base import Store


async def build_worker(
    settings: Settings, store: Store, clock: Clock, metrics: SendMetrics | None = None
) -> Worker:
    """The unsubscribe key, the providers and the worker (nothing applied)."""
    key = await unsubscribe_key(settings.unsubscribe_key, store)
    ctx = EngineContext(settings.timezone, settings.public_url, key)
    providers = build_providers(settings)
    if settings.database_url.startswith(POSTGRES_PREFIX):
        # Replicas share one PostgreSQL: a provider's rate limit holds across all of them.
        shared = {
            name: SharedRateLimiter(rate, name, store, clock)
            for name, config in settings.config.providers.items()
            if (rate := getattr(config, "rate_limit", None)) is not None
            and name in providers.limiters
        }
        providers = providers.with_limiters(shared)
    retention = timedelta(seconds=settings.event_id_retention)
    worker = Worker(store, ctx, clock, providers, metrics, event_id_retention=retention)
    await worker.count_backlog()  # what a previous run (or another replica) left
    return worker
