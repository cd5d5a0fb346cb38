"""A stop, a pause, a delete or a subscriber's deletion while a request is in flight, end to
end: the runner's app on a real store (SQLite, or PostgreSQL under
POSTWRIGHT_TEST_STORE=postgres), real HTTP to fake providers on 127.0.0.1, the file applied
by the reloader, the fake clock.

A request already handed to the provider completes and is recorded (sent, failed or
`outcome_unknown`) and counted; sends no provider was handed yet are cancelled at once, and
neither a retry nor the next repeat follows the request in flight (docs/events.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from runner.core.records import CancelReason, PendingSend, SendStatus
from runner.gitops.reload import Reloader
from tests.fakes.flaky import Flaky
from tests.fakes.mailgun import FakeMailgun, Hold, Reply
from tests.harness import TIMEOUT, Harness, write_repo
from tests.test_delivery_guarantees import SECRETS, mailgun, resend

FIRST, SECOND = "first@shop.test", "second@shop.test"
HOUR = timedelta(hours=1)
INTRO = """\
id: intro
status: running
provider: mail
trigger: {type: event, event: signup}
wait: 1h
repeat: {every: 1d, times: 2}
email:
  from: "Shop <news@shop.test>"
  subject: Welcome
  text: Hello
"""


class Run:
    """The app over one repository, with a reloader applying its edited file."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        assert h.worker is not None and h.store is not None
        self.reloader = Reloader(h.settings, h.store, h.worker, h.clock)
        self.path = h.repo / "automations" / "intro.yaml"

    def signup(self, email: str) -> None:
        """Post a signup and process it (no send round: the test starts those)."""
        answer = self.h.post_event("signup", email)
        assert answer.status_code == 202, answer.text
        self.process()

    def process(self) -> None:
        """One engine round: events processed, nothing sent."""
        worker = self.h.worker
        assert worker is not None
        self.h.call(worker.engine_round)

    def send_in_background(self) -> Future[Any]:
        """A send round, left running while the provider holds its request."""
        worker = self.h.worker
        assert worker is not None
        return self.h.start(worker.send_round)

    def apply(self, old: str | None, new: str | None = None) -> None:
        """Edit the file (`old` -> `new`), or delete it (`old` None), and reload."""
        if old is None:
            self.path.unlink()
        else:
            text = self.path.read_text(encoding="utf-8")
            assert old in text
            self.path.write_text(text.replace(old, new or "", 1), encoding="utf-8")
        result = self.h.call(lambda: self.reloader.reload(["automations/intro.yaml"]))
        assert result.successful, result

    def sends(self) -> dict[tuple[str, int], PendingSend]:
        """Every send of intro by (email, repeat index)."""
        found = self.h.read(lambda tx: tx.pending_sends("intro", list(SendStatus), 100))
        return {(s.email, s.repeat_index): s for s in found}

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.h.http.get("/v1/automations/intro/stats").json()["stats"]
        return stats


@contextmanager
def running(tmp_path: Path, config: str) -> Iterator[Run]:
    repo = write_repo(tmp_path / "repo", {"intro": INTRO}, config)
    with Harness(repo, environ=SECRETS) as h:
        yield Run(h)


@contextmanager
def in_flight(run: Run, hold: Hold) -> Iterator[Future[Any]]:
    """FIRST's email handed to the provider, which holds it; SECOND's still waiting."""
    run.signup(FIRST)
    run.h.advance(HOUR)  # FIRST's email is due; SECOND's comes an hour later
    run.signup(SECOND)
    round_ = run.send_in_background()
    try:
        assert hold.arrived.wait(TIMEOUT)
        yield round_
    finally:
        hold.release.set()
        round_.result(TIMEOUT)


def test_a_stop_lets_the_request_in_flight_complete_and_count(tmp_path: Path) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, running(tmp_path, mailgun(fake.base_url)) as r:
        hold = fake.slow_next()
        with in_flight(r, hold):
            r.apply("status: running", "status: stopped")
            sends = r.sends()
            # Not handed to the provider yet: cancelled at once. In flight: left to finish.
            assert (sends[SECOND, 0].status, sends[SECOND, 0].reason) == (
                SendStatus.CANCELLED,
                "stopped",
            )
            assert (sends[FIRST, 0].status, sends[FIRST, 0].halted) == (
                SendStatus.CLAIMED,
                CancelReason.STOPPED,
            )
        r.h.drain()
        sends = r.sends()
        assert sends[FIRST, 0].status is SendStatus.SENT
        assert set(sends) == {(FIRST, 0), (SECOND, 0)}  # no repeat follows a stopped send
        [message] = r.h.read(lambda tx: tx.messages(10, "intro"))
        assert (message.to, message.status) == (FIRST, "sent")
        stats = r.stats()
        assert (stats["sent"], stats["delivered"], stats["cancelled"]) == (1, 0, {"stopped": 1})
        assert len(fake.accepted) == 1


def test_a_retry_the_stop_comes_before_is_cancelled(tmp_path: Path) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, running(tmp_path, mailgun(fake.base_url)) as r:
        hold = fake.slow_next()
        fake.reply_next(Reply(503, {"message": "Service Unavailable"}))
        with in_flight(r, hold):
            r.apply("status: running", "status: stopped")
        first = r.sends()[FIRST, 0]
        assert (first.status, first.reason) == (SendStatus.CANCELLED, "stopped")
        assert "503" in (first.last_error or "")
        r.h.advance(timedelta(days=3))
        r.h.drain()
        assert fake.requests == 1  # never tried again
        assert r.stats()["cancelled"] == {"stopped": 2}


def test_a_keyed_request_cut_off_after_a_stop_is_unknown_not_repeated(tmp_path: Path) -> None:
    fake = Flaky(lambda path, body: (500, {})).then("stall")
    with fake, running(tmp_path, resend(fake.base_url)) as r:
        r.signup(FIRST)
        r.h.advance(HOUR)
        round_ = r.send_in_background()
        assert fake.arrived.wait(TIMEOUT)
        r.apply("status: running", "status: stopped")
        fake.release.set()  # the provider read the request, then drops the connection
        round_.result(TIMEOUT)
        first = r.sends()[FIRST, 0]
        assert first.status is SendStatus.OUTCOME_UNKNOWN
        [message] = r.h.read(lambda tx: tx.messages(10, "intro"))
        assert message.status == "outcome_unknown"  # kept, so provider events reconcile it
        r.h.advance(timedelta(days=3))
        r.h.drain()
        assert len(fake.received) == 1  # not repeated under its key after the stop
        assert set(r.sends()) == {(FIRST, 0)}


def test_a_pause_lets_the_request_complete_and_its_series_go_on(tmp_path: Path) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, running(tmp_path, mailgun(fake.base_url)) as r:
        hold = fake.slow_next()
        with in_flight(r, hold):
            r.apply("status: running", "status: paused")
            assert r.sends()[SECOND, 0].status is SendStatus.PENDING  # a pause cancels nothing
        r.h.drain()
        sends = r.sends()
        assert sends[FIRST, 0].status is SendStatus.SENT
        assert sends[FIRST, 1].status is SendStatus.PENDING  # the series waits for a restart
        assert r.stats()["sent"] == 1


def test_deleting_a_paused_automation_lets_the_request_complete(tmp_path: Path) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, running(tmp_path, mailgun(fake.base_url)) as r:
        hold = fake.slow_next()
        with in_flight(r, hold):
            r.apply("status: running", "status: paused")
            r.apply(None)
            assert r.sends()[FIRST, 0].halted is CancelReason.DELETED
        sends = r.sends()
        assert sends[FIRST, 0].status is SendStatus.SENT
        assert (sends[SECOND, 0].status, sends[SECOND, 0].reason) == (
            SendStatus.CANCELLED,
            "deleted",
        )
        assert set(sends) == {(FIRST, 0), (SECOND, 0)}
        assert r.stats()["sent"] == 1


def test_deleting_the_subscriber_lets_the_request_complete_without_a_repeat(
    tmp_path: Path,
) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, running(tmp_path, mailgun(fake.base_url)) as r:
        hold = fake.slow_next()
        with in_flight(r, hold):
            answer = r.h.post_event("subscriber.deleted", FIRST)
            assert answer.status_code == 202, answer.text
            r.process()
            assert r.sends()[FIRST, 0].halted is CancelReason.DELETED_SUBSCRIBER
        r.h.drain()
        sends = r.sends()
        assert sends[FIRST, 0].status is SendStatus.SENT
        assert (FIRST, 1) not in sends  # nothing more for a deleted subscriber
        assert r.stats()["sent"] == 1


def test_an_erasure_waits_for_the_request_and_scrubs_what_it_recorded(tmp_path: Path) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, running(tmp_path, mailgun(fake.base_url)) as r:
        hold = fake.slow_next()
        with in_flight(r, hold):
            erasing = r.h.start(lambda: _erase(r.h, FIRST))
            deadline = time.monotonic() + TIMEOUT
            while r.sends()[FIRST, 0].halted is None:  # the deletion was processed
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert not erasing.done()  # it waits for the provider's answer (up to 5 s)
        answer = erasing.result(TIMEOUT)
        assert (answer["erased"], answer["in_flight_cancelled"]) == (True, 0)
        [erased] = [send for (email, _), send in r.sends().items() if email != SECOND]
        assert (erased.status, erased.repeat_index) == (SendStatus.SENT, 0)  # and no repeat
        [message] = r.h.read(lambda tx: tx.messages(10, "intro"))
        assert FIRST not in message.to and message.text is None  # recorded, then scrubbed
        assert r.stats()["sent"] == 1


async def _erase(h: Harness, email: str) -> dict[str, Any]:
    """DELETE /v1/subscribers/{email}, from the server's own loop."""
    async with httpx.AsyncClient(base_url=h.url, timeout=TIMEOUT) as client:
        answer = await client.delete(f"/v1/subscribers/{email}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body
