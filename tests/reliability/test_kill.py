"""`postwright serve` SIGKILLed at random moments while it ingests and sends, again and again
on one store (a SQLite file, or PostgreSQL), with real clients and a local fake provider.

Each cycle starts a server, lets clients post events concurrently (single and batched, each
for a new subscriber) while the server sends to the fake provider, and kills it with
SIGKILL at a moment drawn from a seeded generator: at random, or while the provider holds
one of its requests. Clients post again what got no answer, under the same id. A last
server then finishes the work, and the test checks that every event answered 202 is
stored and made exactly one send; that Resend (idempotency keys) delivered each email
exactly once and nothing stayed unknown; that Postmark (no keys) delivered none twice and
each send whose outcome was unknown became sent once Postmark's delivery webhook named it;
and that no render worker outlived its killed server.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner.cli.clocks import FileClock
from runner.cli.settings import load_settings
from runner.core.records import PendingSend, SendStatus
from runner.providers.postmark import basic_authorization
from runner.store.base import ReadTx
from tests.fakes import serve as serve_fake
from tests.fakes.postmark import FakePostmark
from tests.fakes.resend import FakeResend
from tests.harness import START, write_repo
from tests.reliability.intensity import pick, seeded
from tests.reliability.posters import Ledger, post_events
from tests.reliability.served import WAIT, Served, served, wait_until
from tests.reliability.store_reader import read_store
from tests.serving import POSTWRIGHT
from tests.test_crash import LEASE
from tests.test_delivery_guarantees import HOOK_PASSWORD, HOOK_USER, NAME, SECRETS
from tests.test_delivery_guarantees import INTRO as ONCE_PER_SUBSCRIBER
from tests.test_delivery_guarantees import postmark as postmark_config
from tests.test_delivery_guarantees import resend as resend_config

pytestmark = pytest.mark.reliability

CYCLES = {"sqlite": pick(5, 50), "postgres": pick(3, 50)}
EVENTS_PER_CYCLE = pick(150, 300)  # new events a cycle's clients post at most
LATEST_KILL = 1.0  # seconds after the clients start: the latest random kill
PROVIDER_DELAY = 0.05  # seconds the fake provider holds each request
STEP = 2 * LEASE  # fake time between two servers: every claim of a killed one has expired
SETTLE = pick(30.0, 120.0)  # seconds the last server may take to finish the work
# One email per event: a second send for one event would show it processed twice.
INTRO = ONCE_PER_SUBSCRIBER.replace("status: running\n", "status: running\nretrigger: true\n")

Fake = FakeResend | FakePostmark
UNKNOWN = SendStatus.OUTCOME_UNKNOWN


@contextmanager
def provider(kind: str) -> Iterator[tuple[Fake, str]]:
    """The fake provider `kind`, slow enough that kills land during its requests, and the
    postwright.yaml that sends to it."""
    if kind == "resend":
        with FakeResend() as resend:
            resend.delay = PROVIDER_DELAY
            yield resend, resend_config(resend.base_url)
        return
    postmark = FakePostmark(token=SECRETS["PM_TOKEN"], answer_delay=PROVIDER_DELAY)
    with serve_fake(postmark.app()) as url:
        yield postmark, postmark_config(url)


@dataclass
class KillRun:
    """One store, one fake provider, and what the cycles of servers did to them."""

    repo: Path
    environ: dict[str, str]
    fake: Fake
    url: str  # the store's
    rng: random.Random
    ledger: Ledger = field(default_factory=Ledger)
    kills: int = 0
    kills_in_request: int = 0  # the provider was holding one of the server's requests

    @property
    def clock(self) -> Path:
        return self.repo.parent / "clock"

    def server(self, number: int) -> AbstractContextManager[Served]:
        """Server `number`, at a fake time when the claims of every earlier one expired."""
        FileClock.write(self.clock, START + number * STEP)
        return served(self.repo, self.repo.parent / "serve.log", self.environ, self.clock)

    async def cycle(self, server: Served, number: int) -> None:
        """Clients post while the server works; the server is killed at a seeded moment:
        at random, or once the provider holds one of its requests."""
        posting = asyncio.create_task(
            post_events(server.url, self.ledger, self.rng, number, EVENTS_PER_CYCLE)
        )
        loop = asyncio.get_running_loop()
        if self.rng.random() < 0.5:
            await asyncio.sleep(self.rng.uniform(0, LATEST_KILL))
        else:
            deadline = loop.time() + LATEST_KILL
            while self.fake.in_progress == 0 and loop.time() < deadline:
                await asyncio.sleep(0.002)
            await asyncio.sleep(self.rng.uniform(0, PROVIDER_DELAY))
        self.kills_in_request += self.fake.in_progress > 0
        server.kill()
        self.kills += 1
        await posting


def settle(url: str, clock: Path, now: datetime, server: Served) -> datetime:
    """Move the fake time on until the last server has processed every event and finished
    every send it can (a retry waits a few seconds); the time reached."""

    def left(tx: ReadTx) -> tuple[bool, int]:
        return tx.has_unprocessed(tx.last_event_seq()), tx.queue_depth()

    until = time.monotonic() + SETTLE
    while (waiting := read_store(url, left)) != (False, 0):
        assert time.monotonic() < until, (
            f"the last server did not finish: (events unprocessed, sends) {waiting}\n"
            + server.log_tail()
        )
        now += timedelta(seconds=10)
        FileClock.write(clock, now)
        time.sleep(0.1)  # the server's loops look at the time every 50 ms
    return now


def deliveries(server: Served, fake: FakePostmark, now: datetime) -> None:
    """Post Postmark's Delivery webhook for every message it accepted, as Postmark does."""
    headers = {"authorization": basic_authorization(HOOK_USER, HOOK_PASSWORD)}

    async def post_all() -> None:
        slots = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:

            async def post(message: dict[str, Any]) -> None:
                record = {
                    "RecordType": "Delivery",
                    "MessageID": message["MessageID"],
                    "Recipient": message["To"],
                    "DeliveredAt": now.isoformat(),
                    "Metadata": message["Metadata"],
                }
                async with slots:
                    answer = await http.post(
                        f"/v1/providers/{NAME}/webhook", json=record, headers=headers
                    )
                assert answer.status_code in (200, 202), answer.text

            await asyncio.gather(*(post(m) for m in fake.accepted))

    asyncio.run(post_all())


@dataclass(frozen=True)
class Outcome:
    """The store after the last server."""

    missing: list[str]  # acknowledged event ids the store does not hold
    sends: list[PendingSend]
    waiting: bool  # events still unprocessed
    failed_events: int


def outcome(acknowledged: dict[str, str]) -> Callable[[ReadTx], Outcome]:
    def look(tx: ReadTx) -> Outcome:
        missing = []
        for event_id, email in acknowledged.items():
            event = tx.event_by_id(event_id)
            if event is None or event.email != email:
                missing.append(event_id)
        return Outcome(
            missing,
            tx.pending_sends("intro", list(SendStatus), 10 * len(acknowledged) + 10),
            tx.has_unprocessed(tx.last_event_seq()),
            len(tx.failed_events(100)),
        )

    return look


def unknown_emails(url: str) -> set[str]:
    """Recipients of sends whose outcome is unknown."""
    sends = read_store(url, lambda tx: tx.pending_sends("intro", [UNKNOWN], 1_000_000))
    return {s.email for s in sends}


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("kind", ["resend", "postmark"])
def test_serve_killed_at_random_loses_no_event_and_sends_nothing_twice(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str, store: str
) -> None:
    environ = dict(SECRETS)
    if store == "postgres":
        environ["POSTWRIGHT_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    repo, cycles = tmp_path / "repo", CYCLES[store]
    with provider(kind) as (fake, config):
        write_repo(repo, {"intro": INTRO}, config)
        url = load_settings(repo, environ).database_url
        run = KillRun(repo, environ, fake, url, seeded(f"kill {kind} {store}"))
        for number in range(cycles):
            with run.server(number) as server:
                asyncio.run(run.cycle(server, number))
                wait_until(lambda: not server.group_alive(), "render workers outlived serve")
        with run.server(cycles + 1) as server:  # the last one: posts what got no answer
            asyncio.run(post_events(server.url, run.ledger, run.rng, cycles, 0))
            assert run.ledger.unanswered == {}
            settling = time.monotonic()
            now = settle(url, run.clock, START + (cycles + 1) * STEP, server)
            settled = time.monotonic() - settling
            unknown = unknown_emails(url)
            if isinstance(fake, FakePostmark):  # Postmark reports each message it took
                deliveries(server, fake, now)
                taken = set(fake.per_recipient())
                wait_until(lambda: not unknown_emails(url) & taken, "not reconciled", SETTLE)
            server.stop()
    delivered = fake.per_recipient()
    found = read_store(url, outcome(run.ledger.acknowledged))
    print(
        f"kill {kind} {store}: {run.kills} kills ({run.kills_in_request} while {kind} held a "
        f"request), {len(run.ledger.acknowledged)} events acknowledged in "
        f"{run.ledger.requests} requests ({run.ledger.duplicates} answered duplicate: stored "
        f"by a killed server before it answered), {len(unknown)} sends outcome_unknown "
        f"({len(unknown & set(delivered))} reconciled by delivery webhooks), "
        f"{sum(delivered.values())} emails delivered, "
        f"{sum(n - 1 for n in delivered.values())} duplicates; the last server finished the "
        f"work in {settled:.1f} s"
    )

    emails = sorted(run.ledger.acknowledged.values())
    assert found.missing == [], f"acknowledged events lost: {found.missing[:10]}"
    assert not found.waiting and found.failed_events == 0
    assert sorted(s.email for s in found.sends) == emails  # one send per event, each once
    assert [n for n in delivered.values() if n > 1] == []  # zero duplicates
    sent = sorted(s.email for s in found.sends if s.status == SendStatus.SENT)
    if isinstance(fake, FakeResend):  # idempotency keys: every send delivered exactly once
        assert sent == emails and sorted(delivered) == emails and unknown == set()
        assert [n for n in fake.per_key.values() if n > 1] == []
    else:  # no keys: sent where Postmark took it, unknown (never sent twice) elsewhere
        assert sent == sorted(delivered)
        assert {s.email for s in found.sends if s.status == UNKNOWN} == set(emails) - set(sent)


def test_a_command_beside_a_server_restarted_after_a_kill_leaves_its_log_alone(
    tmp_path: Path,
) -> None:
    # The restarted server once lost its shared lock on the file (its start-up check closed
    # a descriptor of it), so `postwright stats` closing its last connection checkpointed
    # and deleted the write-ahead log the server was still writing: its new connections
    # failed with "disk I/O error" and events it acknowledged afterwards were lost.
    repo = write_repo(tmp_path / "repo", {"intro": INTRO.replace(f"provider: {NAME}\n", "")})
    log = tmp_path / "serve.log"

    def signups(server: Served, prefix: str) -> None:
        for number in range(20):
            event = {"id": f"{prefix}{number}", "type": "signup", "subscriber": {"email": "a@b.co"}}
            assert httpx.post(f"{server.url}/v1/events", json=event).status_code == 202

    with served(repo, log) as server:
        signups(server, "before")
        server.kill()
    with served(repo, log) as server:
        signups(server, "after")
        wal = repo / ".postwright" / "postwright.db-wal"
        log_file = wal.stat().st_ino
        stats = subprocess.run(
            [POSTWRIGHT, "stats", "--repo", str(repo)], capture_output=True, timeout=WAIT
        )
        assert stats.returncode == 0, stats.stderr
        assert wal.stat().st_ino == log_file  # the server's log was left in place
        signups(server, "later")
        assert "disk I/O error" not in server.log_tail()
        server.stop()
    url = load_settings(repo, {}).database_url
    stored = read_store(url, lambda tx: [e.id for e in tx.events_of("a@b.co") if e.id])
    assert len(stored) == 60  # without the lock, the 20 posted last were acknowledged, lost
