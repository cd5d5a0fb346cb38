"""The load-shedding backlog counts the store's queue of unprocessed events, over real HTTP on
a real store (SQLite, or PostgreSQL under POSTWRIGHT_TEST_STORE=postgres): after a restart,
after a request caught up with the queue itself, and on a replica sharing PostgreSQL with
another one that stored the events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.engine.worker import SKIPPED_TICKS
from runner.store.errors import StoreUnavailable
from runner.store.postgres_write import ENGINE_LOCK
from tests import harness
from tests.harness import WELCOME, Harness, write_repo

BOUND = {"POSTWRIGHT_HTTP_MAX_BACKLOG": "5"}


def batch(prefix: str, count: int) -> dict[str, Any]:
    return {
        "events": [
            {"id": f"{prefix}{n}", "type": "signup", "subscriber": {"email": f"{prefix}{n}@x.test"}}
            for n in range(count)
        ]
    }


def backlog(h: Harness) -> float:
    """`postwright_events_backlog` as /metrics shows it."""
    for line in h.http.get("/metrics").text.splitlines():
        if line.startswith("postwright_events_backlog "):
            return float(line.split()[1])
    raise AssertionError("no postwright_events_backlog in /metrics")


def post(h: Harness, body: dict[str, Any]) -> int:
    return h.http.post("/v1/events", json=body).status_code


def test_a_restart_counts_the_events_a_previous_run_left(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ=BOUND) as h:
        assert post(h, batch("a", 8)) == 202  # stored, never processed: the runner stops
    with Harness(tmp_path, environ=BOUND) as h:
        assert backlog(h) == 8
        assert post(h, batch("b", 1)) == 429  # the queue is over the bound already
        h.drain()
        assert backlog(h) == 0
        assert post(h, batch("b", 1)) == 202


def test_a_request_catching_up_lowers_the_backlog(tmp_path: Path) -> None:
    write_repo(tmp_path, {"welcome": WELCOME})
    with Harness(tmp_path, environ=BOUND) as h:
        assert post(h, batch("a", 8)) == 202
        assert backlog(h) == 8
        # Read your writes: the subscribers API processes the queue itself first.
        assert h.http.get("/v1/subscribers/a7@x.test").status_code == 200
        assert backlog(h) == 0
        assert post(h, batch("b", 1)) == 202


def test_a_replica_counts_the_events_another_one_stored(tmp_path: Path) -> None:
    if harness.STORE_DATABASES is None:
        pytest.skip("two replicas share one database only on PostgreSQL (make test runs it)")
    write_repo(tmp_path, {"welcome": WELCOME})
    quick = {**BOUND, "POSTWRIGHT_STORE_LOCK_TIMEOUT": "1s"}
    with Harness(tmp_path, environ=quick) as first, Harness(tmp_path, environ=quick) as second:
        assert post(first, batch("a", 8)) == 202
        assert backlog(second) == 0  # counted at its start, before these arrived
        with psycopg.connect(first.settings.database_url) as holder:
            # A third replica is processing: the second counts the queue first (at most
            # once a second), then skips its round rather than queue for the engine lock,
            # until it has skipped SKIPPED_TICKS in a row: then it waits for the lock.
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (ENGINE_LOCK,))
            second.advance(timedelta(seconds=1))
            assert second.worker is not None
            skipped = [second.call(second.worker.engine_round) for _ in range(SKIPPED_TICKS)]
            assert skipped == [False] * SKIPPED_TICKS
            with pytest.raises(StoreUnavailable, match="lock timeout"):
                second.call(second.worker.engine_round)
        assert backlog(second) == 8
        assert post(second, batch("b", 1)) == 429
        first.drain()
        second.advance(timedelta(seconds=1))
        second.drain()
        assert backlog(second) == 0
        assert post(second, batch("b", 1)) == 202
