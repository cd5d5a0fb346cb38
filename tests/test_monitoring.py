"""deploy/monitoring cannot drift from the runner: every metric name the alert rules and the
dashboard query is one a real `serve` exports at /metrics (suffixes as Prometheus writes
them: counters `_total`, histograms `_bucket`/`_sum`/`_count`), and every metric family the
runner exports appears on the dashboard or in an alert."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.git_servers import bare_repository, git_daemon
from tests.gitfollow import Upstream, automation, serve_git
from tests.harness import WELCOME, Harness, write_repo

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"
DASHBOARD = ROOT / "deploy" / "monitoring" / "grafana-dashboard.json"

# Prometheus' own series, written by the server that scrapes, not by the runner.
PROMETHEUS_SERIES = frozenset({"up"})
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_deploy", ROOT / "scripts/check_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_checker()


def series_names(families: Iterable[tuple[str, str]]) -> set[str]:
    """The series names a query may use for each (family, type), as the exposition writes them."""
    return {name + suffix for name, kind in families for suffix in SUFFIXES.get(kind, ("",))}


def queried_names() -> dict[str, set[str]]:
    """Each metric name the rules and the dashboard read, with the queries that read it."""
    queries = [*check.rule_queries(RULES), *check.dashboard_queries(DASHBOARD)]
    names: dict[str, set[str]] = {}
    for query in queries:
        for name in check.metric_names(query):
            names.setdefault(name, set()).add(query)
    return names


def unknown_names(queried: Iterable[str], exported: set[str]) -> list[str]:
    """The queried names neither the runner nor Prometheus provides."""
    allowed = exported | PROMETHEUS_SERIES
    return sorted(set(queried) - allowed)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    repo = write_repo(tmp_path_factory.mktemp("repo"), {"welcome": WELCOME})
    with Harness(repo) as harness:
        assert harness.post_event("signup", "ada@example.org").status_code == 202
        harness.drain()
        answer = harness.http.get("/metrics")
        assert answer.status_code == 200
    return families(answer.text)


@pytest.fixture(scope="module")
def exported_git(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """What a real `serve --git` exports, following a bare repository over `git daemon`."""
    tmp = tmp_path_factory.mktemp("git")
    upstream = Upstream(tmp / "upstream", bare_repository(tmp / "remotes"))
    upstream.save("hello", automation("hello"), "hello")
    upstream.push()
    with (
        git_daemon(tmp / "remotes") as base,
        serve_git(f"{base}/automations.git", tmp / "data", "--interval", "1h") as run,
    ):
        answer = run.http.get("/metrics")
        assert answer.status_code == 200
    return families(answer.text)


def families(text: str) -> list[tuple[str, str]]:
    """(name, type) of each metric family in Prometheus text."""
    return [(family.name, family.type) for family in text_string_to_metric_families(text)]


def test_every_name_the_alerts_and_dashboard_query_is_exported(
    exported: list[tuple[str, str]], exported_git: list[tuple[str, str]]
) -> None:
    names = queried_names()
    assert "postwright_sends_total" in names and "postwright_send_latency_seconds_bucket" in names
    assert "postwright_git_fetch_errors_total" in names  # alerted on, exported by `serve --git`
    assert unknown_names(names, series_names([*exported, *exported_git])) == []


def test_every_exported_family_is_on_the_dashboard_or_in_an_alert(
    exported: list[tuple[str, str]], exported_git: list[tuple[str, str]]
) -> None:
    used = set(queried_names())
    # `_created` series (when a counter or histogram was made) are bookkeeping, not metrics.
    ours = [
        (n, k)
        for n, k in [*exported, *exported_git]
        if n.startswith("postwright_") and not n.endswith("_created")
    ]
    missing = [name for name, kind in ours if not series_names([(name, kind)]) & used]
    assert missing == []


def test_a_misspelled_or_unsuffixed_name_is_reported(exported: list[tuple[str, str]]) -> None:
    names = series_names(exported)
    assert "postwright_sends_total" in names  # a counter is queried with its _total suffix
    assert "postwright_send_latency_seconds_bucket" in names
    queried = ["postwright_sends", "postwright_send_latency_seconds", "postwright_queue_dept", "up"]
    assert unknown_names(queried, names) == [
        "postwright_queue_dept",
        "postwright_send_latency_seconds",
        "postwright_sends",
    ]


def test_metric_names_are_read_from_promql() -> None:
    query = (
        "histogram_quantile(0.95, sum by (le) (rate(postwright_send_latency_seconds_bucket[5m])))"
        ' > 300 and up{job="x"} == 0'
    )
    assert check.metric_names(query) == {"postwright_send_latency_seconds_bucket", "up"}
