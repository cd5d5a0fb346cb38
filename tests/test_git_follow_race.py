"""The follower in one process: two followers on one store with the race forced (one replica
fetches a commit, another fetches a newer one and applies it first: the late replica must not
roll the newer state back; its reload is `stale`, it fetches again and finds nothing new), and
fetches that time out or find nothing."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.cli.settings import load_settings
from runner.core.clock import FakeClock
from runner.gitops.follow import Following, GitFollower
from runner.gitops.reload import Expected, Reloader
from runner.gitops.reload_state import ReloadResult
from runner.repo.git_remote import FetchError, Remote, fetch
from runner.server.app import build_worker
from runner.store import open_store
from runner.store.base import Store
from tests.fakes.git_servers import bare_repository
from tests.gitfollow import Upstream, automation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class _Replica:
    def __init__(self, tmp: Path, name: str, bare: Path, database: str) -> None:
        self.checkout = tmp / name / "checkout"
        self.settings = load_settings(self.checkout, {"POSTWRIGHT_DATABASE_URL": database})
        self.clock = FakeClock(T0)
        self.store: Store = open_store(database, self.clock)
        self.following = Following(Remote(str(bare)), self.checkout, 3600.0)
        self.before_reload: list[object] = []

    async def follower(self) -> GitFollower:
        worker = await build_worker(self.settings, self.store, self.clock)
        reloader = Reloader(self.settings, self.store, worker, self.clock)
        return GitFollower(self.following, _Hooked(reloader, self), self.store, self.clock)


class _Hooked:
    """The reloader, with a hook run just before the next reload (the forced race)."""

    def __init__(self, reloader: Reloader, replica: _Replica) -> None:
        self.reloader = reloader
        self.replica = replica
        self.results: list[str] = []

    async def reload(
        self,
        changed: Collection[str] | None = None,
        *,
        reason: str = "watch",
        expect: Expected | None = None,
    ) -> ReloadResult:
        while self.replica.before_reload:
            hook = self.replica.before_reload.pop()
            await hook()  # type: ignore[operator]
        result = await self.reloader.reload(changed, reason=reason, expect=expect)
        self.results.append(result.result)
        return result


def test_a_replica_whose_fetch_is_older_never_rolls_back_a_newer_apply(tmp_path: Path) -> None:
    bare = bare_repository(tmp_path / "remotes")
    upstream = Upstream(tmp_path / "upstream", bare)
    created = upstream.save("a1", automation("a1"), "a1 running")
    upstream.push()
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    fast = _Replica(tmp_path, "fast", bare, database)
    late = _Replica(tmp_path, "late", bare, database)

    async def scenario() -> tuple[list[tuple[str, str, str | None]], str | None, list[str]]:
        first, second = await fast.follower(), await late.follower()
        await first.start()
        await second.start()
        paused = upstream.save("a1", automation("a1", "paused"), "pause")
        upstream.push()

        async def overtake() -> None:  # after `late` fetched `paused`, before it applies it
            upstream.save("a1", automation("a1", "paused", "Edited"), "edit")
            upstream.push()
            assert await first.sync("webhook")

        late.before_reload.append(overtake)
        assert await second.sync("webhook")
        row = await fast.store.read(lambda tx: tx.automation("a1"))
        assert row is not None
        entries = await fast.store.read(lambda tx: tx.history("a1"))
        assert paused in {entry.commit for entry in entries}
        hooked = second.reloader
        assert isinstance(hooked, _Hooked)
        for replica in (fast, late):
            await replica.store.close()
        found = [(e.kind, str(e.value), e.commit) for e in entries]
        return found, second.state.applied_commit, hooked.results

    entries, applied, results = asyncio.run(scenario())
    head = upstream.head()
    assert applied == head
    assert "stale" in results  # the late replica's first try was refused, then it caught up
    keys = [(kind, commit) for kind, _, commit in entries]
    assert len(keys) == len(set(keys)), entries  # nothing applied twice, nothing rolled back
    definitions = {commit for kind, _, commit in entries if kind == "definition"}
    assert definitions == {created, head}, entries  # the edit once; no definition of `pause`


def test_a_remote_that_never_answers_is_a_timeout_and_a_missing_one_not_found(
    tmp_path: Path,
) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        remote = Remote(f"git://127.0.0.1:{port}/automations.git", timeout=1.0)
        started = time.monotonic()
        with pytest.raises(FetchError) as stopped:
            fetch(remote, tmp_path / "checkout")
        assert stopped.value.reason == "timeout"
        assert time.monotonic() - started < 10
    bare_repository(tmp_path / "remotes")
    with pytest.raises(FetchError) as missing:
        fetch(Remote(str(tmp_path / "remotes" / "automations.git"), "nope"), tmp_path / "other")
    assert missing.value.reason == "not_found"
