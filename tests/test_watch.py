"""Hot reload end to end: a real `postwright serve` process on a real git repository,
real file saves and git moves, and the API and /metrics showing the outcome.

Every wait polls with a bound (the reload is asynchronous: the watcher debounces, then the
reloader applies); every server process is killed in `finally`.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from watchfiles import Change

from runner.cli.settings import load_settings
from runner.gitops.reload_state import ReloadResult
from runner.gitops.watch import WatchFilter, changed_paths, watch
from tests import serving
from tests.gitrepo import GitRepo
from tests.serving import metric

START_WAIT = 20.0  # seconds for `serve` to answer
VISIBLE = 5.0  # seconds from a save to the change being visible in the API
T = TypeVar("T")


def automation(ident: str, status: str, subject: str) -> str:
    """An event-triggered automation file."""
    return (
        f"id: {ident}\nstatus: {status}\ntrigger:\n  type: event\n  event: signup\n"
        f'email:\n  from: "Shop <news@shop.test>"\n  subject: {subject}\n  text: Hello\n'
    )


FILES = {
    "drafting": automation("drafting", "draft", "First draft"),
    "live": automation("live", "running", "Live subject"),
    "other": automation("other", "running", "Other subject"),
}


@dataclass
class Server:
    """One `postwright serve` process and a client for it."""

    process: subprocess.Popen[bytes]
    http: httpx.Client
    log: Path

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON document."""
        answer = self.http.get(path)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def automation(self, ident: str) -> dict[str, Any]:
        """GET /v1/automations/{id}."""
        return self.get(f"/v1/automations/{ident}")

    def ids(self) -> set[str]:
        """Ids of the applied, not deleted automations."""
        listed = self.get("/v1/automations")["automations"]
        return {a["id"] for a in listed if a["effective_status"] != "deleted"}

    def metrics(self) -> str:
        """The /metrics text."""
        return self.http.get("/metrics").text

    def alive(self) -> None:
        """The process still runs."""
        assert self.process.poll() is None, self.log.read_text(encoding="utf-8")


def wait_for(probe: Callable[[], T | None], what: str, bound: float = VISIBLE) -> tuple[T, float]:
    """Poll `probe` until it returns a value; that value and the seconds it took."""
    return serving.wait_for(probe, what, bound)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    """A checkout with three automations committed on main."""
    checkout = GitRepo(tmp_path / "repo")
    for ident, text in FILES.items():
        checkout.write(f"automations/{ident}.yaml", text)
    checkout.commit("three automations")
    return checkout


@contextmanager
def serve(
    repo: GitRepo,
    *flags: str,
    environ: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """`postwright serve` on a free port with its store outside the checkout."""
    store = {"POSTWRIGHT_DATABASE_URL": f"sqlite:///{repo.path.parent / 'store.db'}"}
    log = repo.path.parent / "serve.log"
    args = ["--repo", str(repo.path), *flags]
    with (
        serving.serve(args, log, environ=store | dict(environ or {}), wait=START_WAIT) as served,
        httpx.Client(base_url=served.url, timeout=5.0, headers=dict(headers or {})) as http,
    ):
        yield Server(served.process, http, log)


def save(repo: GitRepo, ident: str, text: str) -> None:
    """Save an automation file the way an editor does (truncate, write)."""
    (repo.path / "automations" / f"{ident}.yaml").write_text(text, encoding="utf-8")


def subject_of(server: Server, ident: str, subject: str) -> dict[str, Any] | None:
    """The automation when its applied source has `subject`."""
    detail = server.automation(ident)
    return detail if f"subject: {subject}\n" in detail["source"] else None


def test_edit_of_paused_automation_is_live_within_bounds(repo: GitRepo) -> None:
    with serve(repo) as server:
        before = server.automation("drafting")
        save(repo, "drafting", automation("drafting", "draft", "Second draft"))
        detail, elapsed = wait_for(lambda: subject_of(server, "drafting", "Second draft"), "edit")
        assert elapsed < VISIBLE
        assert detail["desired_status"] == "draft"
        assert detail["last_error"] is None
        assert detail["applied_revision"] != before["applied_revision"]
        assert detail["applied"]["source"] == detail["source"]
        assert detail["applied"]["path"] == "automations/drafting.yaml"
        assert [e["kind"] for e in detail["history"]].count("definition") == 2
        assert server.ids() == set(FILES)


def test_edit_of_running_automation_is_refused_and_visible(repo: GitRepo) -> None:
    with serve(repo) as server:
        assert metric(server.metrics(), "postwright_config_last_reload_successful") == 1.0
        save(repo, "live", automation("live", "running", "Sneaky edit"))

        def refused() -> dict[str, Any] | None:
            detail = server.automation("live")
            return detail if detail["last_error"] else None

        detail, _ = wait_for(refused, "refusal")
        assert "subject: Live subject\n" in detail["source"]  # the applied version stays
        rules = {f["rule"] for f in detail["last_error"]["findings"]}
        assert "edit-not-allowed" in rules
        assert detail["effective_status"] == "running"
        assert detail["attempted_revision"] != detail["applied_revision"]
        text = server.metrics()
        assert metric(text, "postwright_config_last_reload_successful") == 0.0
        assert metric(text, "postwright_reload_errors") == 1.0
        assert re.search(r'^postwright_reloads_total\{result="partial"\} [1-9]', text, re.M)
        assert re.search(r'^postwright_automation_info\{.*id="live".*\} 1\.0$', text, re.M)
        # Pausing it in the same file makes the edit legal: it applies then.
        save(repo, "live", automation("live", "paused", "Sneaky edit"))
        detail, _ = wait_for(lambda: subject_of(server, "live", "Sneaky edit"), "paused edit")
        assert (detail["last_error"], detail["effective_status"]) == (None, "paused")
        assert metric(server.metrics(), "postwright_config_last_reload_successful") == 1.0


def test_half_written_file_never_crashes_or_unloads(repo: GitRepo) -> None:
    text = automation("drafting", "draft", "Written in two steps")
    with serve(repo) as server:
        path = repo.path / "automations" / "drafting.yaml"
        with path.open("w", encoding="utf-8") as handle:
            handle.write(text[: len(text) // 2])
            handle.flush()
            os.fsync(handle.fileno())

            def refused() -> dict[str, Any] | None:
                server.alive()
                detail = server.automation("drafting")
                return detail if detail["last_error"] else None

            detail, _ = wait_for(refused, "refusal of the half file")
            assert "subject: First draft\n" in detail["source"]
            assert server.ids() == set(FILES)
            handle.write(text[len(text) // 2 :])
        detail, _ = wait_for(lambda: subject_of(server, "drafting", "Written in two steps"), "rest")
        assert detail["last_error"] is None
        assert server.ids() == set(FILES)
        server.alive()


def test_deleting_a_running_automation_is_blocked(repo: GitRepo) -> None:
    with serve(repo) as server:
        repo.remove("automations/live.yaml")

        def blocked() -> dict[str, Any] | None:
            detail = server.automation("live")
            return detail if detail["deletion_blocked"] else None

        detail, _ = wait_for(blocked, "deletion_blocked")
        assert detail["effective_status"] == "running"
        assert server.ids() == set(FILES)


def test_emptying_the_folder_is_refused(repo: GitRepo) -> None:
    with serve(repo) as server:
        for ident in FILES:
            repo.remove(f"automations/{ident}.yaml")
        pattern = r'^postwright_reloads_total\{result="refused_mass_delete"\} [1-9]'
        wait_for(lambda: re.search(pattern, server.metrics(), re.M), "refused mass delete")
        assert metric(server.metrics(), "postwright_config_last_reload_successful") == 0.0
        assert server.ids() == set(FILES)
        assert {server.automation(i)["effective_status"] for i in FILES} == {"draft", "running"}


def test_allow_mass_delete_applies_the_legal_deletes(repo: GitRepo) -> None:
    with serve(repo, "--allow-mass-delete") as server:
        for ident in FILES:
            repo.remove(f"automations/{ident}.yaml")

        def deleted() -> dict[str, Any] | None:
            detail = server.automation("drafting")
            return detail if detail["effective_status"] == "deleted" else None

        wait_for(deleted, "the draft deleted")
        assert server.ids() == {"live", "other"}  # running: their deletes stay blocked
        assert server.automation("live")["deletion_blocked"] is True


def test_a_replaced_automations_folder_is_watched_again(repo: GitRepo) -> None:
    with serve(repo) as server:
        folder = repo.path / "automations"
        folder.rename(repo.path / "automations.old")
        folder.mkdir()
        for ident, text in FILES.items():
            (folder / f"{ident}.yaml").write_text(text, encoding="utf-8")
        save(repo, "drafting", automation("drafting", "draft", "In the new folder"))
        wait_for(lambda: subject_of(server, "drafting", "In the new folder"), "new folder")
        assert server.ids() == set(FILES)
        save(repo, "drafting", automation("drafting", "draft", "Saved again"))
        wait_for(lambda: subject_of(server, "drafting", "Saved again"), "a later save")


def test_two_commits_pulled_at_once_apply_as_two_steps(repo: GitRepo, tmp_path: Path) -> None:
    upstream = GitRepo(tmp_path / "upstream", init=False)
    repo.git("clone", "-q", str(repo.path), str(upstream.path))
    upstream.git("config", "user.name", "Test")
    upstream.git("config", "user.email", "test@example.test")
    upstream.write("automations/live.yaml", automation("live", "paused", "Live subject"))
    pause = upstream.commit("pause live")
    upstream.write("automations/live.yaml", automation("live", "running", "New subject"))
    edit = upstream.commit("edit and restart live")
    with serve(repo) as server:
        repo.git("fetch", "-q", str(upstream.path), "main")
        repo.git("merge", "-q", "--ff-only", "FETCH_HEAD")
        detail, _ = wait_for(lambda: subject_of(server, "live", "New subject"), "pulled commits")
        assert detail["last_error"] is None
        assert detail["effective_status"] == "running"
        statuses = [(e["value"], e["commit"]) for e in detail["history"] if e["kind"] == "status"]
        assert statuses[-2:] == [("paused", pause), ("running", edit)]
        assert detail["applied"]["commit"] == edit


def test_poll_mode_picks_up_a_change(repo: GitRepo) -> None:
    with serve(repo, "--poll") as server:
        save(repo, "drafting", automation("drafting", "draft", "Polled draft"))
        _, elapsed = wait_for(lambda: subject_of(server, "drafting", "Polled draft"), "poll")
        assert elapsed < VISIBLE


def test_post_reload_needs_a_key_when_keys_are_set(repo: GitRepo) -> None:
    environ = {"POSTWRIGHT_API_KEYS": "k1", "POSTWRIGHT_PUBLIC_URL": "https://shop.test"}
    with serve(repo, environ=environ) as server:
        assert server.http.post("/v1/reload").status_code == 401
        key = {"Authorization": "Bearer k1"}
        answer = server.http.post("/v1/reload", headers=key)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["result"], body["applied"], body["refused"]) == ("applied", [], [])
        listed = server.http.get("/v1/automations", headers=key).json()["automations"]
        assert {a["id"] for a in listed} == set(FILES)


def test_a_hundred_saves_in_a_burst_leave_one_consistent_state(repo: GitRepo) -> None:
    with serve(repo) as server:
        for index in range(100):
            save(repo, "drafting", automation("drafting", "draft", f"Burst {index}"))
        detail, _ = wait_for(lambda: subject_of(server, "drafting", "Burst 99"), "last save")
        assert detail["last_error"] is None
        assert detail["attempted_revision"] == detail["applied_revision"]
        # Nothing arrives after the last save: a reload now changes nothing.
        answer = server.http.post("/v1/reload")
        assert answer.json()["applied"] == []
        again = server.automation("drafting")
        assert (again["source"], again["revision"]) == (detail["source"], detail["revision"])
        assert server.ids() == set(FILES)
        server.alive()


def test_changes_map_to_repository_paths_and_git_files_are_filtered(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    git_dir = repo / ".git"
    keep = WatchFilter(repo, git_dir)
    keep.template_folders = frozenset({repo / "templates"})
    assert keep(Change.modified, str(git_dir / "HEAD"))
    assert keep(Change.added, str(git_dir / "refs" / "heads" / "main"))
    assert not keep(Change.added, str(git_dir / "refs" / "heads" / "main.lock"))
    assert not keep(Change.added, str(git_dir / "objects" / "ab" / "cdef"))
    assert keep(Change.modified, str(repo / "automations" / "a.yaml"))
    assert not keep(Change.modified, str(repo / "automations" / ".a.yaml.swp"))
    assert keep(Change.modified, str(repo / "templates" / "a.html"))
    assert not keep(Change.modified, str(repo / ".postwright" / "postwright.db"))
    batch = {
        (Change.modified, str(repo / "automations" / "sub" / "a.yaml")),
        (Change.modified, str(git_dir / "HEAD")),
    }
    assert changed_paths(repo, git_dir, batch) == {"automations/sub/a.yaml", ".git/HEAD"}


def test_debounce_is_at_most_100_ms(tmp_path: Path) -> None:
    class Never:
        async def reload(
            self, changed: Collection[str] | None = None, *, reason: str = "watch"
        ) -> ReloadResult:
            raise AssertionError("no reload expected")

    settings = load_settings(tmp_path, {})
    with pytest.raises(ValueError, match="debounce_ms"):
        asyncio.run(watch(Never(), settings, asyncio.Event(), debounce_ms=1600))
