"""Retry timing and sends that may have reached the provider (issue 9, points 8 and 9), end to
end: the runner's app on a real store (SQLite, or PostgreSQL under
POSTWRIGHT_TEST_STORE=postgres), real HTTP to fake providers on 127.0.0.1, the fake clock.

A provider's named wait is kept as given (+10 % at most, at most an hour), the generic
backoff starts within seconds; a request the provider read and then dropped, or that was in
flight when `postwright serve` was SIGKILLed, is never sent twice without an idempotency
key (it is `outcome_unknown` until a provider event reconciles it), and with Resend's key it
is repeated under the same key and delivered once.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from runner.cli.clocks import FileClock
from runner.core.records import Message, PendingSend, SendStatus
from runner.providers.postmark import basic_authorization
from tests import harness
from tests.fakes import serve as serve_fake
from tests.fakes.flaky import Action, Flaky
from tests.fakes.mailgun import FakeMailgun, Reply
from tests.fakes.postmark import FakePostmark, accept_all
from tests.fakes.resend import FakeResend
from tests.harness import START, Harness, write_repo
from tests.test_crash import LEASE, WAIT, serve

NAME = "mail"
HOOK_USER, HOOK_PASSWORD = "hooks", "hook-secret"
PEOPLE = [f"p{i}@shop.test" for i in range(5)]
INTRO = f"""\
id: intro
status: running
provider: {NAME}
trigger: {{type: event, event: signup}}
email:
  from: "Shop <news@shop.test>"
  subject: Welcome
  text: "Hello {{{{ subscriber.email }}}}"
"""
SECRETS = {
    "PM_TOKEN": "pm-token",
    "PM_HOOK_USER": HOOK_USER,
    "PM_HOOK_PASSWORD": HOOK_PASSWORD,
    "MG_KEY": "key-test",
    "RE_KEY": "re_test",
}


def postmark(base_url: str) -> str:
    return (
        f"providers:\n  {NAME}:\n    type: postmark\n    server_token_env: PM_TOKEN\n"
        "    webhook_username_env: PM_HOOK_USER\n    webhook_password_env: PM_HOOK_PASSWORD\n"
        f"    base_url: {base_url}\n"
    )


def mailgun(base_url: str) -> str:
    return (
        f"providers:\n  {NAME}:\n    type: mailgun\n    api_key_env: MG_KEY\n"
        f"    domain: mg.shop.test\n    base_url: {base_url}\n"
    )


def resend(base_url: str) -> str:
    return (
        f"providers:\n  {NAME}:\n    type: resend\n    api_key_env: RE_KEY\n"
        f"    base_url: {base_url}\n"
    )


@contextmanager
def runner(tmp_path: Path, config: str, *, start: datetime = START) -> Iterator[Harness]:
    repo = write_repo(tmp_path / "repo", {"intro": INTRO}, config)
    with Harness(repo, environ=SECRETS, start=start) as h:
        yield h


def signup(h: Harness, *emails: str) -> None:
    for email in emails:
        answer = h.post_event("signup", email)
        assert answer.status_code == 202, answer.text


def sends(h: Harness, *statuses: SendStatus) -> list[PendingSend]:
    return h.read(lambda tx: tx.pending_sends("intro", list(statuses or SendStatus), 100))


def messages(h: Harness) -> list[Message]:
    return h.read(lambda tx: tx.messages(100, "intro"))


def seconds_until(h: Harness, send: PendingSend) -> float:
    return (send.due_at - h.clock.now()).total_seconds()


# --- point 8: retry timing ----------------------------------------------------------------


def test_a_retry_after_of_7_s_is_retried_at_7_to_7_7_s(tmp_path: Path) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, runner(tmp_path, mailgun(fake.base_url)) as h:
        fake.rate_limit_next(7)
        signup(h, PEOPLE[0])
        h.drain()
        [waiting] = sends(h, SendStatus.PENDING)
        wait = seconds_until(h, waiting)
        assert 7.0 <= wait <= 7.7 and waiting.attempts == 1
        h.advance(timedelta(seconds=wait - 0.05))
        h.drain()
        assert fake.requests == 1  # not before the provider's wait
        h.advance(timedelta(seconds=0.05))
        h.drain()
        assert fake.requests == 2 and [s.email for s in sends(h, SendStatus.SENT)] == [PEOPLE[0]]


def test_two_429s_announcing_2_s_are_delivered_within_5_s(tmp_path: Path) -> None:
    with FakeResend() as fake, runner(tmp_path, resend(fake.base_url)) as h:
        fake.rate_limit_next(2)
        fake.rate_limit_next(2)
        signup(h, PEOPLE[0])
        h.drain()
        while pending := sends(h, SendStatus.PENDING):
            wait = seconds_until(h, pending[0])
            assert 2.0 <= wait <= 2.2
            h.advance(timedelta(seconds=wait))
            h.drain()
        assert [s.email for s in sends(h, SendStatus.SENT)] == [PEOPLE[0]]
        assert (h.clock.now() - START).total_seconds() <= 4.4
        assert len(fake.delivered) == 1 and fake.requests == 3


def test_an_absurd_retry_after_is_capped_at_an_hour_without_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeMailgun(domain="mg.shop.test") as fake, runner(tmp_path, mailgun(fake.base_url)) as h:
        fake.reply_next(Reply(429, {"message": "slow down"}, {"Retry-After": "100000000000000"}))
        signup(h, PEOPLE[0])
        with caplog.at_level(logging.WARNING):
            h.drain()
        assert "unexpectedly" not in caplog.text
        [waiting] = sends(h, SendStatus.PENDING)
        assert seconds_until(h, waiting) == 3600.0
        assert waiting.last_error is not None and "HTTP 429" in waiting.last_error
        h.advance(timedelta(hours=1))
        h.drain()
        assert [s.email for s in sends(h, SendStatus.SENT)] == [PEOPLE[0]]


def test_the_generic_backoff_retries_within_a_few_seconds(tmp_path: Path) -> None:
    fake = FakePostmark(token="pm-token", status=503)
    with serve_fake(fake.app()) as url, runner(tmp_path, postmark(url)) as h:
        signup(h, PEOPLE[0])
        h.drain()
        [waiting] = sends(h, SendStatus.PENDING)
        assert 0.0 <= seconds_until(h, waiting) <= 2.0  # the first retry: a few seconds
        fake.status = None
        h.advance(timedelta(seconds=2))
        h.drain()
        assert [s.email for s in sends(h, SendStatus.SENT)] == [PEOPLE[0]]
        assert fake.requests == 2


# --- point 9: what may have reached the provider is never sent twice without a key ---------


def delivered(h: Harness, message: Message) -> httpx.Response:
    """A Postmark Delivery webhook about `message` (our id in its Metadata)."""
    record = {
        "RecordType": "Delivery",
        "MessageID": f"pm-{message.id}",  # Postmark's id, which the runner never learnt
        "Recipient": message.to,
        "DeliveredAt": h.clock.now().isoformat(),
        "Metadata": {"postwright_message_id": message.id},
    }
    headers = {
        "content-type": "application/json",
        "authorization": basic_authorization(HOOK_USER, HOOK_PASSWORD),
    }
    return h.http.post(f"/v1/providers/{NAME}/webhook", content=json.dumps(record), headers=headers)


def reconcile_each(h: Harness) -> None:
    """Every outcome_unknown send becomes sent once a provider event names its message."""
    unknown = {m.pending_send_id: m for m in messages(h) if m.status == "outcome_unknown"}
    assert set(unknown) == {s.id for s in sends(h, SendStatus.OUTCOME_UNKNOWN)}
    for message in unknown.values():
        assert delivered(h, message).status_code == 202
    h.drain()
    assert sends(h, SendStatus.OUTCOME_UNKNOWN) == []
    assert {s.id for s in sends(h, SendStatus.SENT)} >= set(unknown)
    assert all(m.status == "sent" for m in messages(h))


@pytest.mark.parametrize("connection", ["fresh", "reused"])
@pytest.mark.parametrize("action", ["drop", "reset"])
def test_a_request_the_provider_read_and_then_dropped_is_never_resent(
    tmp_path: Path, connection: str, action: Action
) -> None:
    with Flaky(accept_all) as fake, runner(tmp_path, postmark(fake.base_url)) as h:
        first = PEOPLE[0]
        if connection == "reused":  # an answered request leaves a keep-alive connection
            fake.then("answer")
            signup(h, first)
            h.drain()
            assert [s.email for s in sends(h, SendStatus.SENT)] == [first]
        fake.then(action)
        signup(h, PEOPLE[1])
        h.drain()
        [lost] = sends(h, SendStatus.OUTCOME_UNKNOWN)
        assert lost.email == PEOPLE[1] and lost.in_flight is None
        assert lost.last_error is not None and "not resent" in lost.last_error
        expected = [1, 1] if connection == "reused" else [1]
        assert [r.connection for r in fake.received] == expected
        h.advance(timedelta(days=1))
        h.drain()
        assert len(fake.received) == len(expected)  # never handed over again
        reconcile_each(h)


def serve_environ(repo: Path) -> dict[str, str]:
    """The secrets, and the scenario's PostgreSQL database when the suite runs on one."""
    extra = dict(SECRETS)
    if harness.STORE_DATABASES is not None:
        extra["POSTWRIGHT_DATABASE_URL"] = harness.STORE_DATABASES(repo)
    return extra


@contextmanager
def killed_mid_request(
    tmp_path: Path, config: str, arrived: Callable[[float], bool]
) -> Iterator[Path]:
    """`postwright serve` sends the signups of PEOPLE and is SIGKILLed once the provider
    holds the request (`arrived` waits for it); yields the repository for the restart."""
    repo = write_repo(tmp_path / "repo", {"intro": INTRO}, config)
    clock = tmp_path / "clock"
    FileClock.write(clock, START)
    batch = {
        "events": [
            {"id": f"k{i}", "type": "signup", "subscriber": {"email": person}}
            for i, person in enumerate(PEOPLE)
        ]
    }
    log = tmp_path / "serve.log"
    with serve(repo, clock, log, serve_environ(repo)) as (process, url):
        answer = httpx.post(f"{url}/v1/events", json=batch, timeout=WAIT)
        assert answer.status_code == 202, answer.text
        assert arrived(WAIT), log.read_text(errors="replace")
        process.send_signal(signal.SIGKILL)  # while the provider holds the request
        assert process.wait(WAIT) == -signal.SIGKILL
    yield repo


def test_serve_killed_while_postmark_holds_the_request_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        fake = stack.enter_context(Flaky(accept_all).then("stall"))
        repo = stack.enter_context(
            killed_mid_request(tmp_path, postmark(fake.base_url), fake.arrived.wait)
        )
        [held] = fake.received
        assert sorted(item["To"] for item in held.json()) == PEOPLE  # one batch, all five
        restart = START + LEASE + timedelta(seconds=1)  # the dead claim's lease expired
        h = stack.enter_context(Harness(repo, environ=SECRETS, start=restart))
        h.drain()
        unknown = sends(h, SendStatus.OUTCOME_UNKNOWN)
        assert sorted(s.email for s in unknown) == PEOPLE
        assert all(s.attempts == 1 and "interrupted" in (s.last_error or "") for s in unknown)
        stored = messages(h)
        assert sorted(m.to for m in stored) == PEOPLE
        assert {(m.status, m.sent_at) for m in stored} == {("outcome_unknown", START)}
        h.advance(timedelta(days=1))
        h.drain()
        assert len(fake.received) == 1  # zero duplicates: nothing was handed over again
        reconcile_each(h)


def test_serve_killed_while_resend_holds_the_request_repeats_it_under_the_same_key(
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        fake = stack.enter_context(FakeResend())
        hold = fake.slow_next()
        repo = stack.enter_context(
            killed_mid_request(tmp_path, resend(fake.base_url), hold.arrived.wait)
        )
        restart = START + LEASE + timedelta(seconds=1)
        h = stack.enter_context(Harness(repo, environ=SECRETS, start=restart))
        h.drain()  # repeated at once; Resend still holds the first: 409, same key later
        assert fake.delivered == [] and len(fake.keys_seen) == 2
        assert fake.keys_seen[0] == fake.keys_seen[1]
        hold.release.set()  # the first request completes at Resend after all
        assert hold.finished.wait(WAIT)
        for _ in range(3):  # the retry waits a few seconds at most
            h.advance(timedelta(seconds=5))
            h.drain()
        assert sorted(s.email for s in sends(h, SendStatus.SENT)) == PEOPLE
        assert sorted(email["to"][0] for email in fake.delivered) == PEOPLE  # once each
        assert set(fake.keys_seen) == {fake.keys_seen[0]}  # one key for every try
        ids = {email["id"] for email in fake.delivered}
        assert {m.provider_message_id for m in messages(h)} == ids  # Resend's first answer
