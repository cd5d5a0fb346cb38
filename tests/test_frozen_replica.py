"""One stopped replica must not stop the cluster (issue 10, defect 9; docs/scaling.md).

Three real `postwright serve` replicas on one PostgreSQL database. The one holding the
engine's advisory lock is found in `pg_locks` (its application name carries its pid) and
stopped with SIGSTOP inside that transaction. Due sends still go out through the others
while it holds the lock (sending never takes it); event processing resumes once the server
ends the stopped session (`idle_in_transaction_session_timeout`); after SIGCONT the stopped
replica reconnects and works on, and nobody got an email twice. Every wait is bounded.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg

from runner.core.records import SendStatus
from runner.store.postgres_write import ENGINE_LOCK
from tests.harness import START, write_repo
from tests.test_replicas import REMINDER, WORK_WAIT, Cluster, Replica, post_round_robin

IDLE_TIMEOUT = 8  # seconds: longer than the sends below need, so they finish under the lock
SEND_BOUND = 6.0  # seconds for the others to send what fell due
FREEZE_WAIT = 30.0  # seconds to catch a replica inside its engine transaction
EARLY, BUSY, LATE = 300, 3_000, 100  # people signed up before, during and after the freeze

Watcher = psycopg.Connection[tuple[object, ...]]  # the test's own look at the database
_HOLDER = """
SELECT a.pid, a.application_name, a.state
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s
"""


def engine_lock_holder(conn: Watcher) -> tuple[int, int] | None:
    """(backend pid, replica process pid) of the session holding the engine lock, if any."""
    row = conn.execute(_HOLDER, (ENGINE_LOCK,)).fetchone()
    if row is None:
        return None
    backend, name, _state = row
    assert isinstance(backend, int) and isinstance(name, str), row
    return backend, int(name.split()[2])  # "postwright pid <pid> <host>"


def session_state(conn: Watcher, backend: int) -> str | None:
    row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone()
    return None if row is None else str(row[0])


def freeze_lock_holder(conn: Watcher, candidates: list[Replica]) -> tuple[Replica, int]:
    """SIGSTOP a candidate while it holds the engine lock; (the replica, its backend pid)."""
    by_pid = {replica.process.pid: replica for replica in candidates}
    deadline = time.monotonic() + FREEZE_WAIT
    while time.monotonic() < deadline:
        holder = engine_lock_holder(conn)
        if holder is not None and holder[1] in by_pid:
            backend, pid = holder
            replica = by_pid[pid]
            replica.process.send_signal(signal.SIGSTOP)
            time.sleep(0.3)  # had its round ended just before the stop, the lock moves on
            if engine_lock_holder(conn) == holder:
                return replica, backend
            replica.process.send_signal(signal.SIGCONT)
        time.sleep(0.002)  # polling another process's state
    raise AssertionError("no candidate replica was caught holding the engine lock")


@contextmanager
def posting_in_background(url: str, people: list[str], prefix: str) -> Iterator[None]:
    """Post signups for `people` to one replica from a thread while the block runs."""
    failure: list[BaseException] = []

    def post() -> None:
        try:
            post_round_robin([url], people, prefix)
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(WORK_WAIT)
    assert not thread.is_alive(), "posting did not finish"
    assert not failure, failure


def test_a_stopped_replica_holding_the_engine_lock_does_not_stop_the_others(
    tmp_path: Path, postgres_url: str
) -> None:
    repo = write_repo(tmp_path / "repo", {"reminder": REMINDER})
    early = [f"a{i}@shop.test" for i in range(EARLY)]
    busy = [f"b{i}@shop.test" for i in range(BUSY)]
    late = [f"c{i}@shop.test" for i in range(LATE)]
    environ = {"POSTWRIGHT_STORE_IDLE_IN_TRANSACTION_TIMEOUT": f"{IDLE_TIMEOUT}s"}
    with (
        Cluster(tmp_path, postgres_url, repo, environ) as cluster,
        psycopg.connect(postgres_url, autocommit=True) as watcher,
    ):
        ingesting, *others = [cluster.start() for _ in range(3)]
        post_round_robin([r.url for r in (ingesting, *others)], early, "a")
        cluster.wait_for("the early signups", lambda: _processed(watcher, EARLY))

        # Events keep the engine busy; one replica that does not ingest is stopped inside
        # its engine transaction (the ingesting one would hold the HTTP posts up).
        with posting_in_background(ingesting.url, busy, "b"):
            frozen, backend = freeze_lock_holder(watcher, others)
            # Stopped between statements (or, rarely, while one waits for a row lock).
            assert session_state(watcher, backend) in ("idle in transaction", "active")

            cluster.set_clock(START + timedelta(hours=1, minutes=1))  # the reminders are due
            stopped_at = time.monotonic()
            cluster.wait_for(
                "the early reminders",
                lambda: _sent_to(cluster, early) == len(early),
                timeout=SEND_BOUND,
            )
            elapsed = time.monotonic() - stopped_at
            # Sent while the stopped replica still held the lock: sending never needs it.
            assert engine_lock_holder(watcher) == (backend, frozen.process.pid), elapsed

        # The server ends the stopped session; the others take the lock and process on.
        cluster.wait_for(
            "the busy signups", lambda: _processed(watcher, EARLY + BUSY), timeout=WORK_WAIT
        )
        assert session_state(watcher, backend) is None

        frozen.process.send_signal(signal.SIGCONT)
        cluster.wait_for(
            "the woken replica's rollback",
            lambda: "engine round rolled back" in frozen.log.read_text(errors="replace"),
        )
        post_round_robin([frozen.url], late, "c")  # it takes work again
        cluster.wait_for(
            "the late signups", lambda: _processed(watcher, EARLY + BUSY + LATE), timeout=WORK_WAIT
        )
        cluster.set_clock(START + timedelta(hours=3))
        everyone = early + busy + late
        cluster.wait_for("every reminder", lambda: _sent_to(cluster, everyone) == len(everyone))

        assert cluster.read(lambda tx: tx.failed_events(100)) == []
        assert Counter(m.to for m in cluster.messages("reminder")) == Counter(
            dict.fromkeys(everyone, 1)
        )
        sends = cluster.read(lambda tx: tx.pending_sends("reminder", list(SendStatus), 10_000))
        assert Counter(s.email for s in sends) == Counter(dict.fromkeys(everyone, 1))
        assert frozen.process.poll() is None
    print(f"early reminders sent {elapsed:.1f} s after the freeze, under the held lock")


def _processed(watcher: Watcher, signups: int) -> bool:
    """Every event so far processed and one reminder send per person signed up."""
    row = watcher.execute(
        "SELECT (SELECT count(*) FROM events WHERE NOT processed),"
        " (SELECT count(*) FROM pending_sends WHERE automation_id = 'reminder')"
    ).fetchone()
    return row == (0, signups)


def _sent_to(cluster: Cluster, people: list[str]) -> int:
    wanted = set(people)
    return len({m.to for m in cluster.messages("reminder")} & wanted)
