"""Test-session wiring: with POSTWRIGHT_TEST_STORE=postgres the end-to-end scenarios run on a
throwaway PostgreSQL server instead of SQLite (`make test` runs them both ways)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness

pytest_plugins = ["tests.pg"]


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
