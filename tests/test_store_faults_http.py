"""A fault of the database during a request, over real HTTP: `503` with `Retry-After` and a
JSON error, one log line, never a traceback; the next request after the fault succeeds.

Real faults only: on SQLite a write lock another program holds (a `sqlite3` shell, a backup)
and a full database; on PostgreSQL a lock wait given up (`lock_timeout`) and sessions the
server ended.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from runner.store.base import WriteTx
from runner.store.sqlite_write import SqliteWriteTx
from tests.harness import WELCOME, Harness, write_repo

API = WELCOME.replace("id: welcome", "id: vip").replace(
    "  type: event\n  event: subscriber.added\n", "  type: api\n"
)
ALICE = "alice@shop.test"
WEBHOOK = "/v1/providers/default/webhook"
# Every kind of request that writes: ingestion, the trigger, the subscribers API, a webhook.
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/events", {"id": "e-2", "type": "signup", "subscriber": {"email": ALICE}}),
    ("POST", "/v1/automations/vip/trigger", {"subscriber": ALICE}),
    ("PUT", f"/v1/subscribers/{ALICE}", {"fields": {"plan": "pro"}}),
    ("POST", WEBHOOK, {"id": "open-1", "type": "opened", "message_id": "(set by the test)"}),
]
READS = ["/v1/automations/welcome/stats", f"/v1/subscribers/{ALICE}", "/v1/automations", "/metrics"]


@contextmanager
def runner(tmp_path: Path, environ: dict[str, str]) -> Iterator[tuple[Harness, str]]:
    """The app with ALICE subscribed and welcomed; yields it and her message's id."""
    repo = write_repo(tmp_path / "repo", {"welcome": WELCOME, "vip": API})
    with Harness(repo, environ=environ) as h:
        first = {"id": "e-1", "type": "signup", "subscriber": {"email": ALICE}}
        assert h.http.post("/v1/events", json=first).status_code == 202
        h.drain()
        [message] = h.read(lambda tx: tx.messages(10, "welcome"))
        yield h, message.id


def request(h: Harness, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    return h.http.request(method, path, json=body)


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == "store_unavailable"
    assert "Traceback" not in answer.text and "sqlite3" not in answer.text


def assert_one_line_each(caplog: pytest.LogCaptureFixture, answered: int) -> None:
    lines = [r for r in caplog.records if "answered 503" in r.getMessage()]
    assert len(lines) == answered
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.WARNING)
    assert ALICE not in caplog.text  # the route's template is logged, not the address


def writes(message_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, {**body, "message_id": message_id} if path == WEBHOOK else body)
        for method, path, body in WRITES
    ]


def test_sqlite_locked_by_another_program_answers_503_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "pw.db"
    with runner(tmp_path, {"POSTWRIGHT_DATABASE_URL": f"sqlite:///{database}"}) as (h, mid):
        h.write(_short_busy_wait)
        holder = sqlite3.connect(database)
        try:
            holder.execute("BEGIN IMMEDIATE")  # a sqlite3 shell holding the write lock
            for method, path, body in writes(mid):
                assert_unavailable(request(h, method, path, body))
        finally:
            holder.rollback()
            holder.close()
        assert_one_line_each(caplog, len(WRITES))
        for method, path, body in writes(mid):
            assert request(h, method, path, body).status_code in (200, 202)


def _short_busy_wait(tx: WriteTx) -> None:
    """The writer gives up on a held lock after 0.2 s instead of 10 s (test time)."""
    assert isinstance(tx, SqliteWriteTx)
    tx.db.execute("PRAGMA busy_timeout = 200")


def test_a_full_sqlite_database_answers_503(tmp_path: Path) -> None:
    database = tmp_path / "pw.db"
    with runner(tmp_path, {"POSTWRIGHT_DATABASE_URL": f"sqlite:///{database}"}) as (h, _):

        def cap(tx: WriteTx) -> None:  # the file may not grow: SQLITE_FULL, as on a full disk
            assert isinstance(tx, SqliteWriteTx)
            tx.db.execute("PRAGMA max_page_count = 1")  # lowered to the current size

        h.write(cap)
        big = {"id": "e-big", "type": "signup", "subscriber": {"email": ALICE}}
        big["data"] = {"note": "x" * 200_000}
        assert_unavailable(h.http.post("/v1/events", json=big))

        def uncap(tx: WriteTx) -> None:
            assert isinstance(tx, SqliteWriteTx)
            tx.db.execute("PRAGMA max_page_count = 1073741823")

        h.write(uncap)
        assert h.http.post("/v1/events", json=big).status_code == 202


def test_postgres_lock_timeouts_answer_503_on_writes_and_reads(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"POSTWRIGHT_DATABASE_URL": postgres_url, "POSTWRIGHT_STORE_LOCK_TIMEOUT": "1s"}
    with runner(tmp_path, environ) as (h, mid), psycopg.connect(postgres_url) as holder:
        tables = "events, subscribers, pending_sends, messages, meta, automations"
        holder.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")  # a migration, a DBA
        for method, path, body in writes(mid):
            assert_unavailable(request(h, method, path, body))
        for path in READS:
            assert_unavailable(h.http.get(path))
        holder.rollback()
        assert_one_line_each(caplog, len(WRITES) + len(READS))
        for method, path, body in writes(mid):
            assert request(h, method, path, body).status_code in (200, 202)
        for path in READS:
            assert h.http.get(path).status_code == 200


def test_postgres_sessions_ended_by_the_server_answer_503_then_recover(
    tmp_path: Path, postgres_url: str
) -> None:
    with runner(tmp_path, {"POSTWRIGHT_DATABASE_URL": postgres_url}) as (h, _):
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE 'postwright%%' AND pid <> pg_backend_pid()"
            ).fetchall()
        assert ended  # the runner's pooled sessions
        answers = []
        for n in range(10):  # each dead pooled session fails one request, then it is replaced
            event = {"id": f"after-{n}", "type": "signup", "subscriber": {"email": ALICE}}
            answers.append(h.http.post("/v1/events", json=event))
            if answers[-1].status_code == 202:
                break
        *failed, last = answers
        assert last.status_code == 202
        assert failed, "a request met a session the server had ended"
        for answer in failed:
            assert_unavailable(answer)
