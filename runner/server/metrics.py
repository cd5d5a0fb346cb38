"""Prometheus metrics of one app: counters bumped by server and worker, gauges from the store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "AutomationInfo", "GitMetrics", "Metrics"]

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
        self.requests_refused = Counter(
            "postwright_http_requests_refused",
            "Requests refused before any handler: shed load (backlog, in_flight), a foreign "
            "host or origin, a body that is not JSON",
            ["reason"],
            registry=self.registry,
        )
        self.events_backlog = Gauge(
            "postwright_events_backlog",
            "Received events the engine has not processed yet (this process's count)",
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
        self.provider_paused = Gauge(
            "postwright_provider_paused",
            "1 while a provider's queue is paused after a 401/403 (an alert: check its key)",
            ["provider"],
            registry=self.registry,
        )
        self.reload_errors = Gauge(
            "postwright_reload_errors",
            "Automations whose latest file change was refused",
            registry=self.registry,
        )
        self.reload_successful = Gauge(
            "postwright_config_last_reload_successful",
            "1 when the last reload applied every change it saw, 0 when it refused any",
            registry=self.registry,
        )
        self.reload_success_time = Gauge(
            "postwright_config_last_reload_success_timestamp_seconds",
            "When the last fully successful reload finished (Unix time)",
            registry=self.registry,
        )
        self.reloads = _Totals("postwright_reloads", "Reloads by result", "result")
        self.registry.register(self.reloads)
        self.automations = _AutomationInfo()
        self.registry.register(self.automations)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _Totals(Collector):
    """A counter by one label, read from the store just before a scrape (restarts keep it)."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.totals: dict[str, int] = {}

    def update(self, totals: Mapping[str, int]) -> None:
        """Replace the totals."""
        self.totals = dict(totals)

    def collect(self) -> Iterator[Metric]:
        """One sample per label value."""
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self.totals.items()):
            family.add_metric([value], count)
        yield family


class _SendTotals(_Totals):
    """`postwright_sends_total{outcome}` from the store's counts, so restarts keep the totals."""

    def __init__(self) -> None:
        super().__init__(
            "postwright_sends", "Sends by outcome (sent, failed, cancelled, ...)", "outcome"
        )


@dataclass(frozen=True)
class AutomationInfo:
    """The labels of one `postwright_automation_info` sample."""

    id: str
    status: str  # effective, as the runner runs it
    desired_status: str  # as the file says
    revision: str  # the applied revision


class _AutomationInfo(Collector):
    """`postwright_automation_info{id, status, desired_status, revision} 1` per automation."""

    def __init__(self) -> None:
        self.rows: list[AutomationInfo] = []

    def update(self, rows: Iterable[AutomationInfo]) -> None:
        """Replace the automations (read just before a scrape)."""
        self.rows = sorted(rows, key=lambda row: row.id)

    def collect(self) -> Iterator[Metric]:
        """One sample per automation."""
        family = GaugeMetricFamily(
            "postwright_automation_info",
            "Applied automations: effective and desired status, applied revision",
            labels=["id", "status", "desired_status", "revision"],
        )
        for row in self.rows:
            family.add_metric([row.id, row.status, row.desired_status, row.revision], 1)
        yield family


class GitMetrics(Collector):
    """The follower's fetches (`serve --git`), read from its state at scrape time."""

    def __init__(self, state: GitStateView) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        """Success time, last result, fetches, errors by reason, jumps, webhooks by result."""
        state = self.state
        success = GaugeMetricFamily(
            "postwright_git_last_fetch_success_timestamp_seconds",
            "When the followed repository was last fetched successfully (Unix time; 0: never)",
        )
        at = state.last_success_at
        success.add_metric([], 0.0 if at is None else at.timestamp())
        yield success
        last = GaugeMetricFamily(
            "postwright_git_last_fetch_successful",
            "1 when the last fetch of the followed repository succeeded, 0 when it failed",
        )
        last.add_metric([], 1.0 if state.last_fetch_ok else 0.0)
        yield last
        fetches = CounterMetricFamily("postwright_git_fetches", "Fetches of the followed branch")
        fetches.add_metric([], state.fetches)
        yield fetches
        errors = CounterMetricFamily(
            "postwright_git_fetch_errors",
            "Failed fetches by reason (auth, host_key, not_found, unreachable, timeout, error)",
            labels=["reason"],
        )
        for reason, count in sorted(state.errors.items()):
            errors.add_metric([reason], count)
        yield errors
        jumps = CounterMetricFamily(
            "postwright_git_jumps",
            "Fetched commits applied as a jump (a force-push or non-fast-forward)",
        )
        jumps.add_metric([], state.jumps)
        yield jumps
        hooks = CounterMetricFamily(
            "postwright_git_webhooks", "Push webhooks by result", labels=["result"]
        )
        for result, count in sorted(state.webhooks.items()):
            hooks.add_metric([result], count)
        yield hooks


class GitStateView(Protocol):
    """What GitMetrics reads of runner.gitops.follow.GitState."""

    last_success_at: datetime | None
    last_fetch_ok: bool | None
    fetches: int
    jumps: int
    errors: dict[str, int]
    webhooks: dict[str, int]
