"""The history walk of `validate --base` over real git repositories."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.checking.walk import validate_history, walk_history
from runner.cli.main import main
from runner.core.findings import Finding, Severity
from runner.errors import GitError
from tests.gitrepo import GitRepo, automation

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EDIT_HELP = "set `status: paused` in an earlier commit, then edit"


def rules(found: list[Finding]) -> list[tuple[str, str, int, int, str | None]]:
    """(rule, path, line, col, commit) of each finding, sorted."""
    return sorted((f.rule, f.path, f.line, f.col, f.commit) for f in found)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("automations/a.yaml", automation("a"))
    repo.write("automations/b.yaml", automation("b"))
    repo.commit("base")
    return repo


def test_illegal_commit_in_the_middle_is_named(repo: GitRepo) -> None:
    base = repo.head()
    repo.write("automations/a.yaml", automation("a", "paused"))
    repo.commit("pause a")
    repo.write("automations/b.yaml", automation("b", subject="Changed"))
    bad = repo.commit("edit running b")
    repo.write("automations/a.yaml", automation("a", "running", "New"))
    repo.commit("edit and restart a")
    found = validate_history(repo.path, base, NOW)
    assert rules(found) == [("edit-not-allowed", "automations/b.yaml", 6, 3, bad)]
    assert found[0].message == "`email.subject` changed while the automation is running"
    assert found[0].help == EDIT_HELP


def test_merge_commit_is_legal_but_squash_is_refused(repo: GitRepo) -> None:
    base = repo.head()
    repo.branch("feature")
    repo.write("automations/a.yaml", automation("a", "paused"))
    repo.commit("pause a")
    repo.write("automations/a.yaml", automation("a", "running", "New"))
    repo.commit("edit and restart a")

    on_branch = validate_history(repo.path, base, NOW)
    assert rules(on_branch) == [("squash-unsafe", "automations/a.yaml", 6, 3, None)]
    assert on_branch[0].severity is Severity.WARNING
    assert on_branch[0].message == (
        "every commit is legal, but the net change of `a` since "
        f"{base[:7]} is not (edit-not-allowed): a squash merge would be refused"
    )
    assert on_branch[0].help == "merge with a merge commit or rebase, not squash"

    repo.checkout("main")
    repo.branch("squashed")
    squashed = repo.squash("feature", "squash feature")
    refused = validate_history(repo.path, base, NOW)
    assert rules(refused) == [("edit-not-allowed", "automations/a.yaml", 6, 3, squashed)]

    repo.checkout("main")
    merge = repo.merge("feature", "merge feature")
    result = walk_history(repo.path, base, NOW)
    assert result.findings == []
    assert [sha for sha, _ in result.steps][-1] == merge
    assert result.steps[-1][1] == []  # the merge resolved no conflict


def conflicting_branches(repo: GitRepo) -> None:
    """main and feature both change `a`'s description (metadata, each legal)."""
    repo.write("automations/a.yaml", automation("a", extra="description: one\n"))
    repo.commit("describe a")
    repo.branch("feature")
    repo.write("automations/a.yaml", automation("a", extra="description: feature\n"))
    repo.commit("feature description")
    repo.checkout("main")
    repo.write("automations/a.yaml", automation("a", extra="description: main\n"))
    repo.commit("main description")
    repo.merge_conflicting("feature")


def test_conflict_resolution_editing_a_running_automation_is_reported(repo: GitRepo) -> None:
    base = repo.head()
    conflicting_branches(repo)
    repo.write(
        "automations/a.yaml", automation("a", "running", "Sneaky", extra="description: both\n")
    )
    merge = repo.commit("merge feature")
    result = walk_history(repo.path, base, NOW)
    assert rules(result.findings) == [("edit-not-allowed", "automations/a.yaml", 7, 3, merge)]
    assert [(c.id, c.kind, c.edited) for c in result.steps[-1][1]] == [
        ("a", "modified", ("email.subject",))
    ]


def test_clean_conflict_resolution_is_legal(repo: GitRepo) -> None:
    base = repo.head()
    conflicting_branches(repo)
    repo.write("automations/a.yaml", automation("a", extra="description: both\n"))
    repo.commit("merge feature")
    result = walk_history(repo.path, base, NOW)
    assert result.findings == []
    assert [(c.id, c.metadata) for c in result.steps[-1][1]] == [("a", ("description",))]


def test_moving_a_file_is_not_a_change(repo: GitRepo) -> None:
    base = repo.head()
    repo.move("automations/a.yaml", "automations/team/growth/a.yaml")
    moved = repo.commit("move a")
    result = walk_history(repo.path, base, NOW)
    assert result.findings == []
    assert [
        (sha, [(c.id, c.kind, c.old_path, c.new_path) for c in changes])
        for sha, changes in result.steps
    ] == [(moved, [("a", "moved", "automations/a.yaml", "automations/team/growth/a.yaml")])]


def test_renaming_an_id_is_a_delete_and_a_create(repo: GitRepo) -> None:
    repo.write("automations/old.yaml", automation("old", "draft"))
    base = repo.commit("add old")
    repo.remove("automations/old.yaml")
    repo.write("automations/new.yaml", automation("new", "draft"))
    renamed = repo.commit("rename old to new")
    result = walk_history(repo.path, base, NOW)
    assert rules(result.findings) == [
        ("rename-resets-dedupe", "automations/new.yaml", 1, 5, renamed)
    ]
    assert [(c.id, c.kind) for c in result.steps[0][1]] == [("new", "created"), ("old", "deleted")]


def test_recreating_an_id_deleted_before_the_base_is_refused(repo: GitRepo) -> None:
    repo.write("automations/gone.yaml", automation("gone", "draft"))
    repo.commit("add gone")
    repo.remove("automations/gone.yaml")
    base = repo.commit("delete gone")
    repo.write("automations/sub/gone.yaml", automation("gone", "draft"))
    again = repo.commit("re-create gone")
    found = validate_history(repo.path, base, NOW)
    assert rules(found) == [("id-reused", "automations/sub/gone.yaml", 1, 5, again)]


def test_recreating_an_id_deleted_during_the_walk_is_refused(repo: GitRepo) -> None:
    repo.write("automations/gone.yaml", automation("gone", "draft"))
    base = repo.commit("add gone")
    repo.remove("automations/gone.yaml")
    repo.commit("delete gone")
    repo.write("automations/gone.yaml", automation("gone", "draft"))
    again = repo.commit("re-create gone")
    repo.write("automations/b.yaml", automation("b", extra="name: B\n"))
    repo.commit("rename b's title (metadata)")
    found = validate_history(repo.path, base, NOW)
    assert rules(found) == [("id-reused", "automations/gone.yaml", 1, 5, again)]


def test_invalid_intermediate_version_is_reported_and_skipped(repo: GitRepo) -> None:
    base = repo.head()
    repo.write("automations/a.yaml", automation("a") + "wait: soon\n")
    broken = repo.commit("break a")
    repo.write("automations/a.yaml", automation("a"))
    fixed = repo.commit("fix a")
    result = walk_history(repo.path, base, NOW)
    # Refused, then back to the held version: the runner ends where HEAD is (a warning).
    assert rules(result.findings) == [("refused-then-repaired", "automations/a.yaml", 8, 7, broken)]
    [warning] = result.findings
    assert "invalid-duration" in warning.message and f"commit {fixed[:7]}" in warning.message
    assert [changes for _, changes in result.steps] == [[], []]  # nothing applied, nothing edited


def test_working_tree_is_checked_against_head(repo: GitRepo) -> None:
    repo.write(".gitignore", "automations/scratch.yaml\n")
    repo.write("automations/c.yaml", automation("c", "paused"))
    repo.commit("add c")
    repo.write("automations/a.yaml", automation("a", subject="Uncommitted"))
    repo.write("automations/untracked.yaml", automation("untracked", "paused"))
    repo.write("automations/scratch.yaml", "not: [valid\n")  # ignored: never read
    repo.write("automations/c.yaml", automation("c", "paused", "Fine while paused"))
    result = walk_history(repo.path, None, NOW)
    assert rules(result.findings) == [
        ("edit-not-allowed", "automations/a.yaml", 6, 3, None),
        ("transition-not-allowed", "automations/untracked.yaml", 2, 9, None),
    ]
    assert [(sha, [(c.id, c.kind) for c in changes]) for sha, changes in result.steps] == [
        (None, [("a", "modified"), ("c", "modified"), ("untracked", "created")])
    ]
    assert result.final_tree.snapshot.commit is None


def test_clean_working_tree_adds_no_step(repo: GitRepo) -> None:
    base = repo.head()
    repo.write("automations/a.yaml", automation("a", "paused"))
    paused = repo.commit("pause a")
    repo.write("notes.txt", "untracked but irrelevant\n")
    result = walk_history(repo.path, base, NOW)
    assert [sha for sha, _ in result.steps] == [paused]
    assert result.final_tree.snapshot.commit == paused
    assert result.base_tree.snapshot.commit == base


def test_tree_findings_name_the_commit_that_introduced_them(repo: GitRepo) -> None:
    repo.write("automations/old.yml", "id: old\n")
    base = repo.commit("a pre-existing problem")
    repo.write("automations/new.yml", "id: new\n")
    added = repo.commit("a new problem")
    repo.write("automations/b.yaml", automation("b", extra="name: B\n"))
    repo.commit("unrelated")
    found = validate_history(repo.path, base, NOW)
    assert rules(found) == [
        ("wrong-extension", "automations/new.yml", 1, 1, added),
        ("wrong-extension", "automations/old.yml", 1, 1, None),
    ]


def test_shallow_clone_without_base_exits_2_naming_the_fetch(
    repo: GitRepo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = repo.head()
    repo.write("automations/a.yaml", automation("a", "paused"))
    repo.commit("pause a")
    clone = repo.shallow_clone(tmp_path / "clone")
    out = io.StringIO()
    code = main(["validate", "--base", base, "--repo", str(clone.path)], stdout=out)
    assert code == 2
    assert out.getvalue() == ""
    assert capsys.readouterr().err == (
        f"postwright: error: base commit {base[:7]} is not in this clone (shallow?): "
        f"run `git fetch --unshallow` or `git fetch origin {base}`; "
        "in GitHub Actions, give `actions/checkout` `fetch-depth: 0`\n"
    )
    with pytest.raises(GitError, match="git fetch --unshallow"):
        walk_history(clone.path, base, NOW)


def test_disconnected_shallow_base_names_unshallow(repo: GitRepo, tmp_path: Path) -> None:
    repo.git("config", "uploadpack.allowAnySHA1InWant", "true")
    base = repo.head()
    repo.write("automations/a.yaml", automation("a", "paused"))
    repo.commit("pause a")
    repo.write("automations/b.yaml", automation("b", "paused"))
    repo.commit("pause b")
    clone = repo.shallow_clone(tmp_path / "clone")
    clone.git("fetch", "-q", "--depth", "1", "origin", base)
    with pytest.raises(GitError, match=r"\(shallow\?\): run `git fetch --unshallow`"):
        walk_history(clone.path, base, NOW)


def scheduled_then_paused(repo: GitRepo) -> str:
    start = "start_at: 2026-06-01T09:00:00+09:00\n"
    repo.write("automations/s.yaml", automation("s", "scheduled", extra=start))
    base = repo.commit("schedule s")
    repo.write("automations/s.yaml", automation("s", "paused", extra=start))
    repo.commit("pause s")
    return base


def test_now_decides_whether_start_at_has_passed(repo: GitRepo) -> None:
    base = scheduled_then_paused(repo)
    before = validate_history(repo.path, base, datetime(2026, 5, 1, tzinfo=UTC))
    assert rules(before) == [("transition-not-allowed", "automations/s.yaml", 2, 9, repo.head())]
    assert before[0].message == "status cannot change from scheduled to paused"
    after = validate_history(repo.path, base, datetime(2026, 6, 2, tzinfo=UTC))
    assert [f for f in after if f.severity is Severity.ERROR] == []


def test_now_makes_cli_output_repeatable(repo: GitRepo) -> None:
    base = scheduled_then_paused(repo)
    argv = ["validate", "--base", base, "--now", "2026-05-01T00:00:00Z", "--repo", str(repo.path)]
    first, second = io.StringIO(), io.StringIO()
    assert main([*argv, "--format", "json"], stdout=first) == 1
    assert main([*argv, "--format", "json"], stdout=second) == 1
    assert first.getvalue() == second.getvalue()
    assert repo.head() in first.getvalue()
    assert "transition-not-allowed" in first.getvalue()


def test_commits_touching_no_automation_reuse_the_parent_tree(repo: GitRepo) -> None:
    base = repo.head()
    repo.write("src/app.py", "print('hi')\n")
    unrelated = repo.commit("unrelated code")
    repo.write("automations/b.yaml", automation("b", subject="Changed"))
    bad = repo.commit("edit running b")
    result = walk_history(repo.path, base, NOW)
    assert [sha for sha, _ in result.steps] == [unrelated, bad]
    assert rules(result.findings) == [("edit-not-allowed", "automations/b.yaml", 6, 3, bad)]
    assert result.final_tree.snapshot.commit == bad
    assert result.final_tree.snapshot.read("src/app.py") == b"print('hi')\n"
