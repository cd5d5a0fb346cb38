"""Crashes lose nothing: killed processes, then a restart on the same SQLite file.

The processes are real: a python process that claims a due send and is SIGKILLed before
sending, and `postwright serve` SIGKILLed right after answering 202. Both share the test's
fake time through a FileClock file. Every wait is bounded and every process is killed in
`finally`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from runner.cli.clocks import FAKE_CLOCK_VARIABLE, FileClock
from runner.core.records import SendStatus
from tests import serving
from tests.harness import START, Harness, write_repo

ROOT = Path(__file__).resolve().parents[1]
WAIT = 20.0  # seconds: the bound of every wait on another process
LEASE = timedelta(seconds=60)

REMINDER = """\
id: reminder
status: running
trigger:
  type: event
  event: signup
wait: 1h
email:
  from: "Shop <news@shop.test>"
  subject: Reminder
  text: Hello
"""
HELLO = REMINDER.replace("id: reminder", "id: hello").replace("wait: 1h\n", "")

# Claims every due send under the lease token "doomed", then dies before sending.
CLAIM_AND_DIE = """\
import asyncio, os, signal, sys
from datetime import timedelta
from pathlib import Path
from runner.cli.clocks import FileClock
from runner.store import open_store

async def main() -> None:
    clock = FileClock(Path(sys.argv[2]))
    store = open_store(sys.argv[1], clock)
    now = clock.now()
    lease = now + timedelta(seconds=60)
    claimed = await store.write(lambda tx: tx.claim_due(now, 10, lease, "doomed"))
    print(len(claimed), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def messages(h: Harness, automation_id: str) -> list[str]:
    """Recipients of one automation's messages in the outbox."""
    found = h.read(lambda tx: tx.messages(1000, automation_id))
    return sorted(m.to for m in found)


def test_crash_between_claim_and_send_is_resumed(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"reminder": REMINDER})
    with Harness(repo) as h:
        assert h.post_event("signup", "crash@shop.test").status_code == 202
        h.drain()
        [pending] = h.read(lambda tx: tx.pending_sends("reminder", [SendStatus.PENDING]))
        database = h.settings.database_url
    claimed_at = pending.due_at + timedelta(seconds=1)
    clock = tmp_path / "clock"
    FileClock.write(clock, claimed_at)
    died = subprocess.run(
        [sys.executable, "-c", CLAIM_AND_DIE, database, str(clock)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert died.stdout.strip() == "1"

    with Harness(repo, start=claimed_at + LEASE - timedelta(seconds=1)) as h:
        h.drain()  # the dead claim's lease still holds: nobody sends it yet
        send = h.read(lambda tx: tx.pending_send(pending.id))
        assert send is not None
        assert (send.status, send.lease_token) == (SendStatus.CLAIMED, "doomed")
        assert messages(h, "reminder") == []
        h.advance(timedelta(seconds=2))  # the lease expired: claimed again and sent
        h.drain()
        assert messages(h, "reminder") == ["crash@shop.test"]
        h.advance(timedelta(days=1))
        h.drain()
        resumed = h.read(lambda tx: tx.pending_send(pending.id))
        assert resumed is not None and resumed.status == SendStatus.SENT
        assert messages(h, "reminder") == ["crash@shop.test"]  # exactly once


@contextmanager
def serve(
    repo: Path, clock: Path, log: Path, extra: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`postwright serve` in its own process on a free port, killed when the block ends;
    `extra` environment variables (secrets, POSTWRIGHT_DATABASE_URL) are added."""
    environ = {**(extra or {}), FAKE_CLOCK_VARIABLE: str(clock)}
    args = ["--repo", str(repo)]
    with serving.serve(
        args, log, environ=environ, ready="/healthz", wait=WAIT, graceful=False
    ) as served:
        yield served.process, served.url


def test_serve_killed_right_after_202_loses_no_event(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"hello": HELLO, "reminder": REMINDER})
    clock = tmp_path / "clock"
    FileClock.write(clock, START)
    people = [f"p{i}@shop.test" for i in range(40)]
    batch = {
        "events": [
            {"id": f"k{i}", "type": "signup", "subscriber": {"email": person}}
            for i, person in enumerate(people)
        ]
    }
    with serve(repo, clock, tmp_path / "serve.log") as (process, url):
        answer = httpx.post(f"{url}/v1/events", json=batch, timeout=WAIT)
        process.send_signal(signal.SIGKILL)  # right after the 202, whatever it was doing
        assert answer.status_code == 202
        assert [r["status"] for r in answer.json()["results"]] == ["stored"] * len(people)
        assert process.wait(WAIT) == -signal.SIGKILL

    restart: datetime = START + 2 * LEASE  # claims the dead process held have expired
    with Harness(repo, start=restart) as h:
        stored = h.read(
            lambda tx: [
                len(tx.events_after(person, ["signup"], START - timedelta(seconds=1)))
                for person in people
            ]
        )
        assert stored == [1] * len(people)
        h.drain()
        assert messages(h, "hello") == sorted(people)  # each processed, each email once
        assert h.write(lambda tx: tx.unprocessed_events(10)) == []
        h.advance(timedelta(hours=1))
        h.drain()
        assert messages(h, "reminder") == sorted(people)
        assert messages(h, "hello") == sorted(people)
