"""Hot reload against real git repositories and a real SQLite store
(README.md "Following the repository")."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runner.checking import tree as tree_module
from runner.cli.settings import load_settings
from runner.core.clock import FakeClock
from runner.core.loader import load_automation
from runner.core.records import AppliedAutomation, HistoryEntry, IncomingEvent, PendingSend
from runner.core.records import SendStatus as S
from runner.engine.worker import Worker
from runner.gitops.reload import Reloader, is_mass_delete
from runner.gitops.reload_records import read_state
from runner.gitops.reload_state import (
    APPLIED_COMMIT_META,
    ReloadResult,
    reload_summary,
)
from runner.server.api.models import body_hash
from runner.server.app import build_worker
from runner.store import open_store
from runner.store.base import ReadTx, Store
from tests.gitrepo import GitRepo, automation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WAIT = "wait: 1d\n"
DAY = timedelta(days=1)


def text(ident: str, status: str = "running", subject: str = "Old") -> str:
    """An event-triggered automation whose email goes out a day after the purchase."""
    return automation(ident, status, subject, extra=WAIT)


def path(ident: str) -> str:
    return f"automations/{ident}.yaml"


class Runner:
    """A store, worker and reloader over one git repository, driven from one event loop."""

    def __init__(self, tmp_path: Path, repo: GitRepo, clock: FakeClock) -> None:
        self.repo = repo
        self.clock = clock
        environ = {"POSTWRIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'pw.db'}"}
        self.settings = load_settings(repo.path, environ)
        self.store: Store = open_store(self.settings.database_url, clock)
        self.worker: Worker | None = None
        self._events = 0

    async def start(self, *, allow_mass_delete: bool = False) -> Reloader:
        if self.worker is None:
            self.worker = await build_worker(self.settings, self.store, self.clock)
        return Reloader(
            self.settings,
            self.store,
            self.worker,
            self.clock,
            allow_mass_delete=allow_mass_delete,
        )

    async def read(self, work: Callable[[ReadTx], Any]) -> Any:
        return await self.store.read(work)

    async def row(self, ident: str) -> AppliedAutomation:
        row = await self.read(lambda tx: tx.automation(ident))
        assert row is not None
        return row  # type: ignore[no-any-return]

    async def state(self, ident: str) -> dict[str, Any]:
        state = await self.read(lambda tx: read_state(tx, ident))
        assert state is not None
        return state.to_json()  # type: ignore[no-any-return]

    async def history(self, ident: str, kind: str) -> list[HistoryEntry]:
        entries = await self.read(lambda tx: tx.history(ident))
        return [e for e in entries if e.kind == kind]

    async def sends(self, ident: str) -> list[PendingSend]:
        return await self.read(  # type: ignore[no-any-return]
            lambda tx: tx.pending_sends(ident, tuple(S), limit=1000)
        )

    async def purchase(self, email: str) -> None:
        self._events += 1
        event = IncomingEvent(
            f"e{self._events}", "purchase", email, None, None, {}, None, body_hash({})
        )
        await self.store.ingest([event])
        await self.drain()

    async def drain(self) -> None:
        assert self.worker is not None
        await self.worker.drain()

    async def later(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        await self.drain()

    async def subjects(self, ident: str) -> list[tuple[str, str]]:
        messages = await self.read(lambda tx: tx.messages(100, ident))
        return sorted((m.to, m.subject) for m in messages)


def scenario(
    tmp_path: Path, files: dict[str, str], body: Callable[[Runner], Awaitable[None]]
) -> None:
    """Commit `files`, then run `body` with a runner on one event loop."""
    repo = GitRepo(tmp_path / "repo")
    for ident, content in files.items():
        repo.write(path(ident), content)
    repo.commit("initial")
    runner = Runner(tmp_path, repo, FakeClock(T0))

    async def main() -> None:
        try:
            await body(runner)
        finally:
            await runner.store.close()

    asyncio.run(main())


def rules(result: ReloadResult) -> dict[str, list[str]]:
    return {ident: [f.rule for f in found] for ident, found, _ in result.refused}


# --- the lifecycle through reloads ------------------------------------------------------


def test_refused_edit_keeps_sending_then_pause_and_restart_apply(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        first = await reloader.reload(reason="start")
        assert first.applied == [("promo", "created as running", r.repo.head())]
        await r.purchase("alice@example.com")
        # Editing a running automation on disk is refused; the old version keeps sending.
        r.repo.write(path("promo"), text("promo", subject="New"))
        refused = await reloader.reload([path("promo")])
        assert (refused.result, rules(refused)) == ("partial", {"promo": ["edit-not-allowed"]})
        state = await r.state("promo")
        error = state["last_error"]
        assert (error["rule"], error["path"], error["commit"]) == (
            "edit-not-allowed",
            path("promo"),
            None,
        )
        assert error["line"] >= 1 and error["col"] >= 1 and "pause" in error["help"]
        assert state["desired_status"] == "running"
        assert state["attempted_revision"] != state["applied_revision"]
        assert (await r.row("promo")).revision == 1
        await r.later(DAY + timedelta(minutes=1))
        assert await r.subjects("promo") == [("alice@example.com", "Old")]
        # Pausing while the refused edit is still in the file: the pause and edit apply now.
        await r.purchase("bob@example.com")  # due in a day: falls due while paused
        r.repo.write(path("promo"), text("promo", "paused", subject="New"))
        paused = await reloader.reload([path("promo")])
        assert paused.applied == [("promo", "edited, paused", None)]
        assert (await r.state("promo"))["last_error"] is None
        await r.later(DAY + timedelta(minutes=1))
        [bob] = [s for s in await r.sends("promo") if s.email == "bob@example.com"]
        assert (bob.status, bob.reason) == (S.CANCELLED, "paused")
        # Restart: new content sends, the cancelled send stays cancelled.
        r.repo.write(path("promo"), text("promo", subject="New"))
        restarted = await reloader.reload([path("promo")])
        assert restarted.applied == [("promo", "running", None)]
        await r.purchase("carol@example.com")
        await r.later(DAY + timedelta(minutes=1))
        assert await r.subjects("promo") == [
            ("alice@example.com", "Old"),
            ("carol@example.com", "New"),
        ]
        state = await r.state("promo")
        assert state["applied_revision"] == state["attempted_revision"]
        assert state["desired_status"] == "running"

    scenario(tmp_path, {"promo": text("promo")}, body)


def test_a_pending_send_due_after_the_restart_goes_out(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        await r.purchase("alice@example.com")
        r.repo.write(path("promo"), text("promo", "paused"))
        await reloader.reload([path("promo")])
        await r.later(timedelta(hours=2))
        r.repo.write(path("promo"), text("promo"))  # back to the committed file: its commit
        restart = await reloader.reload([path("promo")])
        assert restart.applied == [("promo", "running", r.repo.head())]
        await r.later(DAY)
        assert await r.subjects("promo") == [("alice@example.com", "Old")]

    scenario(tmp_path, {"promo": text("promo")}, body)


def test_two_commits_pulled_at_once_apply_as_two_steps(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        r.repo.write(path("promo"), text("promo", "paused"))
        pause = r.repo.commit("pause")
        r.repo.write(path("promo"), text("promo", subject="New"))
        restart = r.repo.commit("edit and restart")
        result = await reloader.reload()
        assert result.result == "applied" and result.refused == []
        assert result.applied == [
            ("promo", "paused", pause),
            ("promo", "edited, running", restart),
        ]
        statuses = await r.history("promo", "status")
        assert [(e.value, e.commit) for e in statuses[1:]] == [
            ("paused", pause),
            ("running", restart),
        ]
        definitions = await r.history("promo", "definition")
        assert [e.commit for e in definitions[1:]] == [restart]
        assert await r.read(lambda tx: tx.meta(APPLIED_COMMIT_META)) == restart
        # The same HEAD again: nothing new.
        again = await reloader.reload()
        assert again.applied == [] and again.result == "applied"
        assert len(await r.history("promo", "status")) == 3

    scenario(tmp_path, {"promo": text("promo")}, body)


def test_a_fresh_reloader_continues_from_the_applied_commit(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        await (await r.start()).reload()
        r.repo.write(path("promo"), text("promo", "paused"))
        pause = r.repo.commit("pause")
        r.repo.write(path("promo"), text("promo", "paused", subject="New"))
        edit = r.repo.commit("edit")
        result = await (await r.start()).reload(reason="start")  # a restarted serve
        assert result.applied == [("promo", "paused", pause), ("promo", "edited", edit)]

    scenario(tmp_path, {"promo": text("promo")}, body)


def test_a_force_push_to_unrelated_history_compares_directly(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        r.repo.git("checkout", "-q", "--orphan", "rewritten")
        r.repo.write(path("promo"), text("promo", subject="Rewritten"))
        r.repo.write(path("extra"), text("extra", "draft"))
        head = r.repo.commit("unrelated history")
        result = await reloader.reload()
        assert result.applied == [("extra", "created as draft", head)]
        assert rules(result) == {"promo": ["edit-not-allowed"]}
        assert [commit for _, _, commit in result.refused] == [head]
        assert "subject: Old" in (await r.row("promo")).source
        assert (await r.state("promo"))["last_error"]["commit"] == head
        assert await r.read(lambda tx: tx.meta(APPLIED_COMMIT_META)) == head

    scenario(tmp_path, {"promo": text("promo")}, body)


def test_a_half_written_file_is_refused_and_the_next_save_applies(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        await r.purchase("alice@example.com")
        complete = text("promo", "paused", subject="New")
        for cut in (0, 10, len(complete) // 2, len(complete) - 12):
            (r.repo.path / path("promo")).write_text(complete[:cut])
            result = await reloader.reload([path("promo")])
            assert result.applied == [] and [i for i, _, _ in result.refused] == ["promo"]
            row = await r.row("promo")
            assert (row.status, row.revision) == ("running", 1)
            assert (await r.state("promo"))["last_error"] is not None
        assert [s.status for s in await r.sends("promo")] == [S.PENDING]
        r.repo.write(path("promo"), complete)
        saved = await reloader.reload([path("promo")])
        assert saved.applied == [("promo", "edited, paused", None)]
        assert (await r.state("promo"))["last_error"] is None

    scenario(tmp_path, {"promo": text("promo")}, body)


def test_unchanged_automations_are_not_touched(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        await r.purchase("alice@example.com")
        r.clock.advance(timedelta(hours=1))
        await r.purchase("bob@example.com")

        async def snapshot() -> Any:
            raw = await r.read(lambda tx: tx.meta("reload_state:steady"))
            sends = [(s.id, s.due_at, s.status) for s in await r.sends("steady")]
            return (await r.row("steady"), sends, await r.history("steady", "status"), raw)

        before = await snapshot()
        r.clock.advance(timedelta(hours=1))
        r.repo.write(path("other"), text("other", "paused"))
        result = await reloader.reload([path("other")])
        assert result.applied == [("other", "paused", None)]
        after = await snapshot()
        assert after == before
        assert before[0].revision == 1 and len(before[1]) == 2

    files = {"steady": text("steady"), "other": text("other"), "third": text("third", "draft")}
    scenario(tmp_path, files, body)


def test_deleting_a_running_automation_is_blocked(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        await r.purchase("alice@example.com")
        r.repo.remove(path("promo"))
        r.repo.commit("delete promo")
        result = await reloader.reload()
        assert rules(result) == {"promo": ["delete-running"]}
        assert result.deletion_blocked == ["promo"] and result.result == "partial"
        state = await r.state("promo")
        assert state["deletion_blocked"] is True and state["desired_status"] == "deleted"
        assert (await r.row("promo")).status == "running"
        await r.later(DAY + timedelta(minutes=1))
        assert await r.subjects("promo") == [("alice@example.com", "Old")]
        summary = await r.read(reload_summary)
        assert summary["successful"] is False and summary["result"] == "partial"

    files = {"promo": text("promo"), "a": text("a", "draft"), "b": text("b", "draft")}
    scenario(tmp_path, files, body)


def test_emptying_the_folder_is_refused_as_a_mass_delete(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        await r.purchase("alice@example.com")
        for ident in ("promo", "side", "old"):
            r.repo.remove(path(ident))
        result = await reloader.reload([path(i) for i in ("promo", "side", "old")])
        assert result.result == "refused_mass_delete" and result.applied == []
        assert [(await r.row(i)).status for i in ("promo", "side", "old")] == [
            "running",
            "running",
            "draft",
        ]
        summary = await r.read(reload_summary)
        assert (summary["result"], summary["successful"]) == ("refused_mass_delete", False)
        assert summary["counts"]["refused_mass_delete"] == 1
        # Allowed: only the legal delete applies; the running ones are deletion-blocked.
        allowed = await (await r.start(allow_mass_delete=True)).reload()
        assert allowed.applied == [("old", "deleted", None)]  # removed, not committed
        assert allowed.deletion_blocked == ["promo", "side"]
        assert (await r.row("old")).status == "deleted"
        assert [s.status for s in await r.sends("promo")] == [S.PENDING]

    files = {"promo": text("promo"), "side": text("side"), "old": text("old", "draft")}
    scenario(tmp_path, files, body)


def test_a_burst_of_reloads_leaves_one_consistent_state(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload()
        calls: list[asyncio.Task[ReloadResult]] = []
        for index in range(100):
            r.repo.write(path("promo"), text("promo", "paused", subject=f"S{index}"))
            calls.append(asyncio.create_task(reloader.reload([path("promo")])))
            if index % 7 == 0:
                await asyncio.sleep(0)
        results = await asyncio.gather(*calls)
        # A reload may read a file mid-write (refused, never applied); the last one settles.
        assert all(ident == "promo" for r in results for ident, _, _ in r.refused)
        assert reloader.reloads < 100
        final = await reloader.reload([path("promo")])
        assert final.result == "applied" and final.refused == []
        row = await r.row("promo")
        assert "subject: S99" in row.source and row.status == "paused"
        definitions = await r.history("promo", "definition")
        values = [e.value["source"] for e in definitions]
        assert len(values) == len(set(values))  # no change recorded twice
        assert len(definitions) == row.revision  # one entry per applied revision
        state = await r.state("promo")
        assert state["applied_revision"] == state["attempted_revision"]

    scenario(tmp_path, {"promo": text("promo")}, body)


def test_a_directory_without_git_reloads_from_disk(tmp_path: Path) -> None:
    folder = tmp_path / "plain" / "automations"
    folder.mkdir(parents=True)
    (folder / "promo.yaml").write_text(text("promo", "draft"))
    repo = GitRepo(tmp_path / "plain", init=False)
    runner = Runner(tmp_path, repo, FakeClock(T0))

    async def main() -> None:
        reloader = await runner.start()
        try:
            first = await reloader.reload()
            assert first.applied == [("promo", "created as draft", None)]
            (folder / "promo.yaml").write_text(text("promo", "running"))
            second = await reloader.reload(["automations/promo.yaml"])
            assert second.applied == [("promo", "running", None)]
            state = await runner.state("promo")
            assert state["desired_status"] == "running" and state["applied_commit"] is None
            summary = await runner.read(reload_summary)
            assert summary["counts"]["applied"] == 2 and summary["successful"] is True
            assert json.loads(json.dumps(summary)) == summary
        finally:
            await runner.store.close()

    asyncio.run(main())


def test_mass_delete_threshold() -> None:
    assert not is_mass_delete(1, 1)  # one file removed on purpose
    assert not is_mass_delete(2, 4)
    assert is_mass_delete(3, 4)
    assert is_mass_delete(2, 2)


# --- hostile files (issue 10) -------------------------------------------------------------


def test_a_file_crashing_the_checker_never_blocks_start_up_or_a_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = load_automation

    def crashing(where: str, content: bytes) -> Any:
        if where == path("bad"):
            raise RecursionError("maximum recursion depth exceeded")
        return real(where, content)

    monkeypatch.setattr(tree_module, "load_automation", crashing)

    async def body(r: Runner) -> None:
        reloader = await r.start()
        first = await reloader.reload(None, reason="startup")
        assert first.result == "partial"
        assert [i for i, _, _ in first.applied] == ["promo"]
        assert rules(first) == {"bad": ["check-crashed"]}
        # An emergency pause elsewhere applies while the crashing file is still there.
        r.repo.write(path("promo"), text("promo", "paused"))
        paused = await reloader.reload([path("promo")])
        assert paused.applied == [("promo", "paused", None)]
        assert (await r.row("promo")).status == "paused"

    scenario(tmp_path, {"promo": text("promo"), "bad": text("bad")}, body)


def test_uncommitted_symlink_out_of_the_repository_is_refused_not_read(tmp_path: Path) -> None:
    async def body(r: Runner) -> None:
        reloader = await r.start()
        await reloader.reload(None, reason="startup")
        secret = tmp_path / "secret.txt"
        secret.write_text("api key", encoding="utf-8")
        r.repo.write("templates/real.html", "<p>real</p>")
        (r.repo.path / "templates" / "secret.html").symlink_to(secret)
        os.mkfifo(r.repo.path / "templates" / "pipe.html")
        for ident, name in (("leak", "secret.html"), ("pipe", "pipe.html")):
            r.repo.write(path(ident), text(ident).replace("  html: <p>Hi</p>\n", ""))
            with (r.repo.path / path(ident)).open("a", encoding="utf-8") as file:
                file.write(f"  html_file: ../templates/{name}\n")
        result = await asyncio.wait_for(reloader.reload(None), timeout=10)
        # git never lists a FIFO, so in a checkout it is no uncommitted file: never opened.
        assert rules(result) == {"leak": ["file-outside-repo"], "pipe": ["template-missing"]}
        assert await r.read(lambda tx: tx.automation("leak")) is None

    scenario(tmp_path, {"promo": text("promo")}, body)
