"""Test-session wiring: the test tiers, and with POSTWRIGHT_TEST_STORE=postgres the end-to-end
scenarios on a throwaway PostgreSQL server instead of SQLite (`make test` runs them both ways).

Tiers (markers, assigned here so no test file names its own):
- `unit`: a module of UNIT_MODULES, pure or nearly (no database, git repository, server or
  subprocess); `make test-fast` runs this tier alone, in seconds.
- `e2e`: a module of E2E_MODULES, or the reliability suite: a running `postwright serve` (or the
  in-process harness over real HTTP) driven as a user would.
- `integration`: everything else, the default: real SQLite and PostgreSQL, git repositories,
  subprocesses, fake provider servers. A unit-module test that asks for a database or a git
  repository (INTEGRATION_FIXTURES) is integration too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests import harness

pytest_plugins = ["tests.pg"]

UNIT_MODULES = frozenset(
    {
        "test_addresses",
        "test_architecture",
        "test_prefilter",
        "test_auth",
        "test_catalog",
        "test_clock",
        "test_conditions",
        "test_dashboard_highlight",
        "test_dashboard_links",
        "test_dashboard_session",
        "test_dependencies",
        "test_examples_dir",
        "test_examples_render",
        "test_inflight_encoding",
        "test_findings_one_run",
        "test_git_webhook",
        "test_http_classify",
        "test_lifecycle",
        "test_loader",
        "test_model",
        "test_plan",
        "test_ratelimit",
        "test_render",
        "test_report",
        "test_retry",
        "test_scenario_file",
        "test_review",
        "test_schema",
        "test_semantics",
        "test_steps",
        "test_store_dialect",
        "test_store_time_text",
        "test_strict_json",
        "test_subscribers",
        "test_templates",
        "test_tiers",
        "test_timing",
        "test_tree",
        "test_unsubscribe",
        "test_volume",
        "test_yamlread",
    }
)
E2E_MODULES = frozenset(
    {
        "test_against",
        "test_backlog",
        "test_bench_e2e",
        "test_cli_runner",
        "test_cli_subscribers",
        "test_container",
        "test_crash",
        "test_dashboard_browser",
        "test_dashboard_http",
        "test_delivery_guarantees",
        "test_engine_events",
        "test_entering",
        "test_erasure",
        "test_frozen_replica",
        "test_git_follow",
        "test_git_follow_replicas",
        "test_http_gate",
        "test_http_limits",
        "test_monitoring",
        "test_providers_e2e",
        "test_replicas",
        "test_scenarios_delivery",
        "test_scenarios_events",
        "test_scenarios_lifecycle",
        "test_serve_hostile",
        "test_server",
        "test_single_runner",
        "test_stop_in_flight",
        "test_store_faults_http",
        "test_store_startup",
        "test_subscribers_api",
        "test_watch",
    }
)
INTEGRATION_FIXTURES = frozenset({"postgres_server", "postgres_url", "db", "repo"})
TIERS = ("unit", "integration", "e2e")


def tier_of(module: str, package: str, fixtures: Iterable[str]) -> str:
    """The tier of a test from its module's name, its package and the fixtures it uses."""
    if module in E2E_MODULES or package == "reliability":
        return "e2e"
    if module in UNIT_MODULES and not INTEGRATION_FIXTURES.intersection(fixtures):
        return "unit"
    return "integration"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With `-m unit` alone, modules that hold no unit test are not even imported (seconds)."""
    if config.getoption("markexpr") != "unit" or collection_path.suffix != ".py":
        return None
    is_test_module = collection_path.name.startswith("test_")
    return True if is_test_module and collection_path.stem not in UNIT_MODULES else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (see the module's docstring)."""
    for item in items:
        path = Path(str(item.path))
        tier = tier_of(path.stem, path.parent.name, getattr(item, "fixturenames", ()))
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def _scenario_store(request: pytest.FixtureRequest) -> Iterator[None]:
    if os.environ.get("POSTWRIGHT_TEST_STORE") != "postgres":
        yield
        return
    server = request.getfixturevalue("postgres_server")
    databases: dict[Path, str] = {}

    def database_for(repo: Path) -> str:
        if repo not in databases:
            databases[repo] = server.create_database()
        return databases[repo]

    harness.STORE_DATABASES = database_for
    try:
        yield
    finally:
        harness.STORE_DATABASES = None
        for url in databases.values():
            server.drop_database(url)
