"""Two `serve --git` replicas on one PostgreSQL database following one remote: each commit is
applied once (one history entry per change and commit), whichever replica fetches first.

After every push both replicas get a signed webhook at the same moment, so they fetch and
apply concurrently (the race the applied-commit condition settles); their intervals are an
hour, so only the webhooks fetch. Without PostgreSQL binaries the fixture skips.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from pathlib import Path

from runner.core.records import HistoryEntry
from runner.gitops.git_webhook import github_signature
from runner.store import open_store
from runner.store.base import ReadTx
from tests.fakes.git_servers import bare_repository, git_daemon
from tests.gitfollow import Serve, Upstream, automation, serve_git
from tests.serving import wait_for

SECRET = "replica-hook-secret"
APPLY_WAIT = 20.0


def notify(replicas: list[Serve]) -> None:
    """A signed push webhook to every replica at once (one thread each)."""
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": github_signature(SECRET, body),
    }
    answers: list[int] = []

    def post(replica: Serve) -> None:
        answer = replica.http.post("/v1/git/webhook", content=body, headers=headers)
        answers.append(answer.status_code)

    threads = [threading.Thread(target=post, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert answers == [202] * len(replicas)


def history(database: str, ids: list[str]) -> list[HistoryEntry]:
    """Every history entry of `ids`, read from the shared database."""

    def read(tx: ReadTx) -> list[HistoryEntry]:
        return [entry for ident in ids for entry in tx.history(ident)]

    async def run() -> list[HistoryEntry]:
        from runner.core.clock import SystemClock

        store = open_store(database, SystemClock())
        try:
            return await store.read(read)
        finally:
            await store.close()

    return asyncio.run(run())


def test_two_replicas_apply_each_commit_once(tmp_path: Path, postgres_url: str) -> None:
    bare = bare_repository(tmp_path / "remotes")
    upstream = Upstream(tmp_path / "upstream", bare)
    upstream.save("a1", automation("a1"), "a1")
    upstream.push()
    environ = {"POSTWRIGHT_DATABASE_URL": postgres_url, "POSTWRIGHT_GIT_WEBHOOK_SECRET": SECRET}
    steps: list[list[tuple[str, str]]] = [
        [("a2", automation("a2", "draft"))],
        [("a1", automation("a1", "paused"))],
        [("a1", automation("a1", "paused", "Edited")), ("a2", automation("a2", "running"))],
        [("a3", automation("a3"))],
        [("a1", automation("a1", "running", "Edited"))],
        [("a2", automation("a2", "paused")), ("a3", automation("a3", "paused"))],
        [("a4", automation("a4"))],
    ]
    with git_daemon(tmp_path / "remotes") as base:
        url = f"{base}/automations.git"
        flags = ("--interval", "1h")
        with (
            serve_git(url, tmp_path / "one", *flags, environ=environ) as one,
            serve_git(url, tmp_path / "two", *flags, environ=environ) as two,
        ):
            commits = [upstream.head()]

            def both_at(head: str) -> bool:
                return one.applied(head) and two.applied(head)

            for number, changes in enumerate(steps):
                # A step of two changes is two commits in one push: both replicas walk them.
                for ident, text in changes:
                    commits.append(upstream.save(ident, text, f"step {number}: {ident}"))
                upstream.push()
                notify([one, two])
                wait_for(lambda: both_at(commits[-1]), "both at head", APPLY_WAIT)
            assert one.subject("a1") == "Edited" and two.subject("a1") == "Edited"
            entries = history(postgres_url, ["a1", "a2", "a3", "a4"])
    applied = [(e.automation_id, e.kind, e.commit) for e in entries if e.kind != "pending"]
    twice = {key: n for key, n in Counter(applied).items() if n > 1}
    assert twice == {}, applied
    seen = {commit for _, _, commit in applied}
    assert set(commits) <= seen, (set(commits) - seen, applied)
    for replica in (one, two):
        assert "as a jump" not in replica.output()
