"""Prometheus metrics of one app: counters bumped by server and worker, gauges from the store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600)


class Metrics:
    """One registry per app, so several apps (tests) never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_ingested = Counter(
            "postwright_events_ingested",
            "Events stored by POST /v1/events (duplicates excluded)",
            registry=self.registry,
        )
        self.sends = _SendTotals()
        self.registry.register(self.sends)
        self.queue_depth = Gauge(
            "postwright_queue_depth",
            "Pending and claimed sends (read from the store at scrape time)",
            registry=self.registry,
        )
        self.send_latency = Histogram(
            "postwright_send_latency_seconds",
            "Time from a send's due time to its hand-over to the provider",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reload_errors = Gauge(
            "postwright_reload_errors",
            "Automations whose latest file change was refused",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _SendTotals(Collector):
    """`postwright_sends_total{outcome}` from the store's counts, so restarts keep the totals."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def update(self, totals: Mapping[str, int]) -> None:
        """Replace the totals (read from the store just before a scrape)."""
        self.totals = dict(totals)

    def collect(self) -> Iterator[Metric]:
        """One sample per outcome."""
        family = CounterMetricFamily(
            "postwright_sends",
            "Sends by outcome (sent, failed, cancelled, ...)",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.totals.items()):
            family.add_metric([outcome], count)
        yield family
