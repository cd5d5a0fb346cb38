"""Several `postwright serve` replicas on one PostgreSQL database (docs/scaling.md).

Every replica is a real process on its own port over one shared repository, one fresh
database and one FileClock file the test moves. The issue asks for 10,000 events; 2,000
keep the run near a minute on two cores (the same paths run, only fewer times). Every wait
is bounded and every process is killed in `finally`; without PostgreSQL binaries the
`postgres_url` fixture skips (or fails under POSTWRIGHT_REQUIRE_POSTGRES=1).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import httpx

from runner.cli.clocks import FAKE_CLOCK_VARIABLE, FileClock
from runner.core.records import Message, SendStatus
from runner.store import open_store
from runner.store.base import ReadTx
from tests.harness import START, write_repo
from tests.serving import Serving, serve

T = TypeVar("T")

START_WAIT = 30.0  # seconds for a replica to answer /healthz
WORK_WAIT = 45.0  # seconds for the replicas to reach an expected state (~10 s needed)
LEASE = timedelta(seconds=60)
EVENTS = 2_000  # the issue says 10,000: see the module docstring
BATCH = 100

HELLO = """\
id: hello
status: running
trigger: {type: event, event: signup}
email:
  from: "Shop <news@shop.test>"
  subject: Hello
  text: "Hello {{ subscriber.email }}"
"""
REMINDER = HELLO.replace("id: hello", "id: reminder").replace("email:", "wait: 1h\nemail:")
# 10:00 UTC on START's day: one tick, one email per subscriber existing then.
DIGEST = """\
id: digest
status: running
trigger: {type: schedule, cron: "0 10 * * *", timezone: UTC}
email:
  from: "Shop <news@shop.test>"
  subject: Digest
  text: "News for {{ subscriber.email }}"
"""
SLOW = HELLO.replace("id: hello", "id: slow").replace("email:", "provider: slow\nemail:")
SLOW_CONFIG = """\
providers:
  slow:
    type: postmark
    server_token_env: PW_TEST_PM_TOKEN
    base_url: {base}
"""


Replica = Serving  # one `postwright serve` process of a cluster


class Cluster:
    """Replicas over one repository, one database and one clock file."""

    def __init__(
        self, tmp: Path, database: str, repo: Path, environ: Mapping[str, str] | None = None
    ) -> None:
        self.tmp = tmp
        self.database = database
        self.repo = repo
        self.clock = tmp / "clock"
        FileClock.write(self.clock, START)
        self.extra = dict(environ or {})
        self.replicas: list[Replica] = []
        self.stack = ExitStack()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()  # SIGKILL ends a stopped (SIGSTOP) replica too

    def set_clock(self, instant: datetime) -> None:
        """Move every replica's time (they read the file on each `now()`)."""
        FileClock.write(self.clock, instant)

    def start(self) -> Replica:
        """A new replica on a free port, once it answers /healthz."""
        environ = {**self.extra, FAKE_CLOCK_VARIABLE: str(self.clock)}
        environ["POSTWRIGHT_DATABASE_URL"] = self.database
        log = self.tmp / f"replica-{len(self.replicas)}.log"
        replica = self.stack.enter_context(
            serve(
                ["--repo", str(self.repo)],
                log,
                environ=environ,
                ready="/healthz",
                wait=START_WAIT,
                graceful=False,
            )
        )
        self.replicas.append(replica)
        return replica

    def read(self, work: Callable[[ReadTx], T]) -> T:
        """Read the shared database directly (as any replica would)."""
        import asyncio

        async def run() -> T:
            store = open_store(self.database, FileClock(self.clock))
            try:
                return await store.read(work)
            finally:
                await store.close()

        return asyncio.run(run())

    def messages(self, automation_id: str) -> list[Message]:
        """Every outbox message of one automation."""
        return self.read(lambda tx: tx.messages(100_000, automation_id))

    def summary(self) -> str:
        """Messages and distinct recipients per automation, failed events: for failures."""
        found = self.read(lambda tx: tx.messages(100_000))
        per = Counter(m.automation_id for m in found)
        people = {a: len({m.to for m in found if m.automation_id == a}) for a in per}
        failed = len(self.read(lambda tx: tx.failed_events(100_000)))
        return f"messages {dict(per)}, recipients {people}, failed events {failed}"

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float = WORK_WAIT) -> None:
        """Poll `ready` until true, failing after `timeout` seconds with the replicas' logs."""
        deadline = time.monotonic() + timeout
        while not ready():
            for replica in self.replicas:
                code = replica.process.poll()
                assert code is None or code == -signal.SIGKILL, replica.log.read_text()
            if time.monotonic() > deadline:
                tails = "\n".join(r.log.read_text(errors="replace")[-1500:] for r in self.replicas)
                raise AssertionError(f"timed out waiting for {what}: {self.summary()}\n{tails}")
            time.sleep(0.1)  # other processes are working


def post_round_robin(urls: list[str], people: list[str], prefix: str) -> None:
    """Post one signup per person in batches of BATCH, each batch to the next replica."""
    with httpx.Client(timeout=WORK_WAIT) as client:
        for n, first in enumerate(range(0, len(people), BATCH)):
            batch = [
                {"id": f"{prefix}{i}", "type": "signup", "subscriber": {"email": person}}
                for i, person in enumerate(people[first : first + BATCH], start=first)
            ]
            answer = client.post(f"{urls[n % len(urls)]}/v1/events", json={"events": batch})
            assert answer.status_code == 202, answer.text
            assert {r["status"] for r in answer.json()["results"]} == {"stored"}


def once_each(messages: list[Message]) -> Counter[str]:
    """Recipients counted; the caller compares with one per person."""
    return Counter(m.to for m in messages)


def test_three_replicas_send_every_email_exactly_once(tmp_path: Path, postgres_url: str) -> None:
    repo = write_repo(tmp_path / "repo", {"hello": HELLO, "reminder": REMINDER, "digest": DIGEST})
    people = [f"p{i}@shop.test" for i in range(EVENTS)]
    with Cluster(tmp_path, postgres_url, repo) as cluster:
        replicas = [cluster.start() for _ in range(3)]
        post_round_robin([r.url for r in replicas], people, "e")

        cluster.wait_for("hello", lambda: len(cluster.messages("hello")) >= EVENTS)
        assert cluster.messages("reminder") == []  # due in 1 h
        cluster.set_clock(START + timedelta(hours=1, minutes=1))  # past 10:00 and the wait
        cluster.wait_for(
            "reminder and digest",
            lambda: (
                len(cluster.messages("reminder")) >= EVENTS
                and len(cluster.messages("digest")) >= EVENTS
            ),
        )
        cluster.set_clock(START + timedelta(hours=1, minutes=2))  # rounds after the last send
        cluster.wait_for("a quiet cluster", lambda: _quiet(cluster))

        # Each event processed once, by one replica: none failed on a concurrent twin.
        assert cluster.read(lambda tx: tx.failed_events(100)) == []
        expected = Counter(dict.fromkeys(people, 1))
        for automation in ("hello", "reminder", "digest"):
            found = cluster.messages(automation)
            assert once_each(found) == expected, automation
            ids = [m.pending_send_id for m in found]
            assert len(set(ids)) == len(ids), f"{automation}: a send was stored twice"
        # One pending send per subscriber for the 10:00 tick: the tick fired once.
        digest = cluster.read(lambda tx: tx.pending_sends("digest", list(SendStatus), 10_000))
        assert Counter(s.email for s in digest) == expected
        assert {s.status for s in digest} == {SendStatus.SENT}
        for replica in replicas:  # no claim was ever taken from a live replica
            assert "lease lost" not in replica.log.read_text(errors="replace")


def _quiet(cluster: Cluster) -> bool:
    active = [SendStatus.PENDING, SendStatus.CLAIMED]
    due = cluster.read(
        lambda tx: [tx.pending_sends(a, active) for a in ("hello", "reminder", "digest")]
    )
    unprocessed = cluster.read(lambda tx: tx.queue_depth())
    return all(not sends for sends in due) and unprocessed == 0


def test_replica_killed_mid_batch_loses_nothing(tmp_path: Path, postgres_url: str) -> None:
    repo = write_repo(tmp_path / "repo", {"hello": HELLO, "reminder": REMINDER})
    people = [f"k{i}@shop.test" for i in range(600)]
    with Cluster(tmp_path, postgres_url, repo) as cluster:
        victim, _second, _third = (cluster.start() for _ in range(3))
        post_round_robin([victim.url], people, "k")  # all accepted by the victim
        victim.process.send_signal(signal.SIGKILL)  # while it processes and sends them
        assert victim.process.wait(START_WAIT) == -signal.SIGKILL
        cluster.set_clock(START + LEASE + timedelta(seconds=1))  # its claims expire
        cluster.wait_for("hello", lambda: len(cluster.messages("hello")) >= len(people))
        cluster.set_clock(START + timedelta(hours=1, minutes=2))
        cluster.wait_for("reminder", lambda: len(cluster.messages("reminder")) >= len(people))
        cluster.wait_for("a quiet cluster", lambda: _quiet_of(cluster, ("hello", "reminder")))
        expected = Counter(dict.fromkeys(people, 1))
        assert once_each(cluster.messages("hello")) == expected
        assert once_each(cluster.messages("reminder")) == expected


def _quiet_of(cluster: Cluster, automations: tuple[str, ...]) -> bool:
    active = [SendStatus.PENDING, SendStatus.CLAIMED]
    due = cluster.read(lambda tx: [tx.pending_sends(a, active) for a in automations])
    return all(not sends for sends in due) and cluster.read(lambda tx: tx.queue_depth()) == 0


class HeldPostmark:
    """A Postmark stand-in holding its first request until `release`; later ones pass."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.released = threading.Event()
        self.requests = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with fake.lock:
                    fake.requests += 1
                    first = fake.requests == 1
                if first:
                    fake.held.set()
                    fake.released.wait(WORK_WAIT)
                body = b'{"ErrorCode": 0, "Message": "OK", "MessageID": "pm-%d"}' % fake.requests
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[HeldPostmark]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.released.set()
            self.server.shutdown()
            self.server.server_close()
            thread.join(START_WAIT)


def test_replica_stopped_past_its_lease_cannot_finalise(tmp_path: Path, postgres_url: str) -> None:
    with HeldPostmark().running() as postmark:
        config = SLOW_CONFIG.format(base=postmark.url)
        repo = write_repo(tmp_path / "repo", {"slow": SLOW}, config)
        environ = {"PW_TEST_PM_TOKEN": "pm-token"}
        with Cluster(tmp_path, postgres_url, repo, environ) as cluster:
            stopped = cluster.start()
            post_round_robin([stopped.url], ["late@shop.test"], "s")
            assert postmark.held.wait(WORK_WAIT), "the first replica never called the provider"
            stopped.process.send_signal(signal.SIGSTOP)  # inside its provider call
            [send] = cluster.read(lambda tx: tx.pending_sends("slow", [SendStatus.CLAIMED]))
            assert send.in_flight is not None  # marked before the request was written

            cluster.start()
            cluster.set_clock(START + LEASE + timedelta(seconds=1))  # the lease expired
            # The new replica finds the request in flight: Postmark has no idempotency key,
            # so the send is `outcome_unknown`, never handed over a second time.
            cluster.wait_for("the settled send", lambda: len(cluster.messages("slow")) == 1)
            postmark.released.set()  # the first call now answers 200...
            stopped.process.send_signal(signal.SIGCONT)  # ...to a replica past its lease
            cluster.wait_for(
                "the late result",
                lambda: "lease lost" in stopped.log.read_text(errors="replace"),
                timeout=START_WAIT,
            )
            assert stopped.process.poll() is None
            [message] = cluster.messages("slow")
            assert (message.pending_send_id, message.status) == (send.id, "outcome_unknown")
            final = cluster.read(lambda tx: tx.pending_send(send.id))
            assert final is not None and final.status == SendStatus.OUTCOME_UNKNOWN
            assert final.lease_token is None and final.in_flight is None
            assert postmark.requests == 1  # handed over once, whatever the replicas did
