"""`validate --base` and the reloader judge every commit of a history the same.

Random histories of one or two automation files (legal and illegal status changes, edits,
broken files, deletions, re-additions) are committed to a real git repository; the history
walk of `validate --base` and a reloader over a real SQLite store following HEAD commit by
commit must accept and refuse the same ids at every commit and end each commit holding the
same versions.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.checking.walk import walk_history
from runner.cli.settings import load_settings
from runner.core.clock import FakeClock
from runner.core.steps import Step
from runner.engine.catalog import DELETED, version_of
from runner.gitops.reload import Reloader
from runner.server.app import build_worker
from runner.store import open_store
from tests.gitrepo import GitRepo, automation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BROKEN = "broken"
# A file's content at one commit: (status, subject), BROKEN, or None (no file).
STATUSES = ("draft", "running", "paused", "stopped")
Content = tuple[str, str] | str | None
CONTENTS: list[Content] = [
    *((status, subject) for status in STATUSES for subject in "AB"),
    BROKEN,
    None,
]
# What the runner holds per id after a commit: (status, subject).
Held = dict[str, tuple[str, str]]


@dataclass
class Judged:
    """One commit as judged by one side: ids applied (a real change), ids refused, held state."""

    applied: set[str]
    refused: set[str]
    held: Held


def histories(ids: list[str]) -> st.SearchStrategy[list[dict[str, Content]]]:
    one_commit = st.fixed_dictionaries({i: st.sampled_from(CONTENTS) for i in ids})
    return st.lists(one_commit, min_size=1, max_size=5)


def write(repo: GitRepo, ident: str, content: Content) -> None:
    target = repo.path / "automations" / f"{ident}.yaml"
    if content is None:
        target.unlink(missing_ok=True)
    elif isinstance(content, str):  # BROKEN
        repo.write(f"automations/{ident}.yaml", f"id: {ident}\nstatus: [unclosed\n")
    else:
        status, subject = content
        repo.write(f"automations/{ident}.yaml", automation(ident, status, subject))


def commit_history(root: Path, history: list[dict[str, Content]]) -> tuple[GitRepo, list[str]]:
    repo = GitRepo(root)
    repo.write("README.md", "automations\n")
    base = repo.commit("base")
    shas = [base]
    for number, files in enumerate(history):
        for ident, content in files.items():
            write(repo, ident, content)
        shas.append(repo.commit(f"step {number}"))
    return repo, shas


def walk_side(root: Path, base: str) -> list[tuple[str | None, Judged]]:
    """Each commit as `validate --base` judges it."""
    return [(commit, _judged(step)) for commit, step in walk_history(root, base, T0).judged]


def _judged(step: Step) -> Judged:
    outcomes = step.outcomes().values()
    applied = {o.id for o in outcomes if o.accepted and o.change and o.change.kind != "unchanged"}
    held = {i: (v.model.status.value, v.model.email.subject) for i, v in step.held.versions.items()}
    return Judged(applied, {o.id for o in outcomes if not o.accepted}, held)


async def reload_side(repo: GitRepo, shas: list[str], data: Path) -> list[Judged]:
    """Each commit as the reloader applies it: HEAD moved one commit, then one reload."""
    clock = FakeClock(T0)
    config = load_settings(repo.path, {"POSTWRIGHT_DATABASE_URL": f"sqlite:///{data / 'pw.db'}"})
    store = open_store(config.database_url, clock)
    try:
        worker = await build_worker(config, store, clock)
        reloader = Reloader(config, store, worker, clock, allow_mass_delete=True)
        repo.git("checkout", "-q", shas[0])
        await reloader.reload(reason="start")
        judged: list[Judged] = []
        for sha in shas[1:]:
            repo.git("checkout", "-q", sha)
            result = await reloader.reload(reason="test")
            assert result.result in ("applied", "partial"), result.error
            rows = await store.read(lambda tx: tx.automations())
            held = {
                row.id: (row.status, version_of(row).model.email.subject)
                for row in rows
                if row.status != DELETED
            }
            applied = {ident for ident, _, _ in result.applied}
            judged.append(Judged(applied, {ident for ident, _, _ in result.refused}, held))
        return judged
    finally:
        await store.close()


def assert_agree(history: list[dict[str, Content]]) -> list[Judged]:
    """Both sides judge every commit of `history` the same; the common judgement."""
    with tempfile.TemporaryDirectory() as tmp:
        repo, shas = commit_history(Path(tmp) / "repo", history)
        walked = walk_side(repo.path, shas[0])
        assert [commit for commit, _ in walked] == shas[1:]
        reloaded = asyncio.run(reload_side(repo, shas, Path(tmp)))
        for number, ((_, walk), reload) in enumerate(zip(walked, reloaded, strict=True)):
            assert walk == reload, f"commit {number} of {history}"
        return [walk for _, walk in walked]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(["a"]))
def test_one_file_histories_are_judged_alike(history: list[dict[str, Content]]) -> None:
    assert_agree(history)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(["a", "b"]))
def test_two_file_histories_are_judged_alike(history: list[dict[str, Content]]) -> None:
    assert_agree(history)


def test_an_illegal_restart_a_deletion_and_a_reused_id_are_judged_alike() -> None:
    judged = assert_agree(
        [
            {"a": ("running", "A"), "b": ("draft", "A")},
            {"a": ("stopped", "A"), "b": BROKEN},
            {"a": ("running", "A"), "b": ("draft", "B")},  # a: stopped is final
            {"a": None, "b": None},  # a deleted (stopped), b deleted (draft)
            {"a": ("draft", "A"), "b": ("running", "A")},  # both ids reused
        ]
    )
    assert [(j.applied, j.refused) for j in judged] == [
        ({"a", "b"}, set()),
        ({"a"}, {"b"}),
        ({"b"}, {"a"}),
        ({"a", "b"}, set()),
        (set(), {"a", "b"}),
    ]
    assert judged[2].held == {"a": ("stopped", "A"), "b": ("draft", "B")}
