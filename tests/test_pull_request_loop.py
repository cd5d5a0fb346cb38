"""The pull-request loop in real git repositories: monorepo sub-folders, runs with nothing to
check, and a branch judged as the runner applies it (docs/output-formats.md)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from runner.cli.main import main
from tests.gitrepo import GitRepo, automation

NOW = "2026-06-01T12:00:00Z"


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_REMOTE_NAME"):
        monkeypatch.delenv(name, raising=False)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([*argv, "--now", NOW], stdout=out)
    return code, out.getvalue()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GitRepo:
    """An empty git repository, the commands' working folder."""
    checkout = GitRepo(tmp_path / "repo")
    monkeypatch.chdir(checkout.path)
    return checkout


def start(repo: GitRepo, status: str) -> str:
    """Commit `automations/welcome.yaml` with `status` as the branch's base; its sha."""
    repo.write("automations/welcome.yaml", automation("welcome", status))
    return repo.commit("base")


@pytest.fixture
def monorepo(repo: GitRepo) -> str:
    """`mail/automations/welcome.yaml` running at base (the sha returned), then written back
    to draft."""
    repo.write("README.md", "the shop\n")
    repo.write("mail/automations/welcome.yaml", automation("welcome", "running"))
    base = repo.commit("base")
    repo.write("mail/automations/welcome.yaml", automation("welcome", "draft"))
    repo.commit("back to draft")
    return base


def rules(text: str) -> list[str]:
    return [
        line.split(" ")[0] + " " + line.split(" ")[1]
        for line in text.splitlines()
        if ": " in line and "[" in line
    ]


@pytest.mark.parametrize("where", ["mail", "mail/automations"])
def test_a_subfolder_is_judged_from_its_cwd(
    repo: GitRepo, monorepo: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = monorepo
    monkeypatch.chdir(repo.path / where)
    code, out = run("validate", "--base", base)
    assert code == 1
    assert "mail/automations/welcome.yaml:2:9: error[transition-not-allowed]" in out


def test_a_subfolder_is_judged_with_repo(repo: GitRepo, monorepo: str) -> None:
    base = monorepo
    code, out = run("validate", "--repo", "mail", "--base", base, "--format", "github")
    assert code == 1
    assert "::error file=mail/automations/welcome.yaml,line=2" in out


def test_a_subfolder_plan_names_paths_from_the_top(
    repo: GitRepo, monorepo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = monorepo
    monkeypatch.chdir(repo.path / "mail")
    code, out = run("plan", "--base", base)
    assert code == 1
    assert "mail/automations/welcome.yaml" in out and "transition-not-allowed" in out


def test_a_subfolder_paths_filter_and_working_tree(
    repo: GitRepo, monorepo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = monorepo
    repo.write("mail/automations/other.yaml", "id: other\nstatus: [\n")
    monkeypatch.chdir(repo.path / "mail" / "automations")
    code, out = run("validate", "other.yaml")
    assert code == 1
    assert out.startswith("mail/automations/other.yaml:")
    assert "welcome" not in out
    code, out = run("validate", "--base", base, "welcome.yaml")
    assert code == 1 and "other.yaml" not in out and "transition-not-allowed" in out


def test_paths_from_the_top_of_a_monorepo_find_their_folder(repo: GitRepo, monorepo: str) -> None:
    repo.write("mail/automations/other.yaml", "id: other\nstatus: [\n")
    # At the top, as the pre-commit hook runs, with the changed files.
    code, out = run("validate", "mail/automations/other.yaml")
    assert code == 1 and out.startswith("mail/automations/other.yaml:")


def test_a_subfolder_history_sees_templates_and_retired_ids(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "  html_file: ../templates/welcome.html\n"
    text = automation("welcome", "running").replace("  html: <p>Hi</p>\n", body)
    repo.write("mail/automations/welcome.yaml", text)
    repo.write("mail/templates/welcome.html", "<p>Hi</p>")
    repo.write("mail/automations/old.yaml", automation("old", "paused"))
    repo.commit("start")
    repo.remove("mail/automations/old.yaml")
    base = repo.commit("delete old")
    repo.write("mail/templates/welcome.html", "<p>Hello</p>")
    repo.write("mail/automations/old.yaml", automation("old", "draft"))
    repo.commit("edit a running template, re-create old")
    monkeypatch.chdir(repo.path / "mail")
    code, out = run("validate", "--base", base)
    assert code == 1
    assert "mail/automations/welcome.yaml:7:3: error[edit-not-allowed]" in out, out
    assert "mail/automations/old.yaml:1:5: error[id-reused]" in out, out


def test_no_automations_folder_exits_2_naming_where_it_looked(
    repo: GitRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.write("mail/automations/welcome.yaml", automation("welcome"))
    repo.commit("one")
    for argv in (["validate"], ["validate", "--base", "HEAD"], ["plan"]):
        code, out = run(*argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        assert "no findings" not in out
        assert f"no automations/ folder in {repo.path.resolve()}" in err
        assert "automations found in mail" in err


def test_a_missing_path_exits_2(
    repo: GitRepo,
    monorepo: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(repo.path / "mail")
    code, out = run("validate", "automations/nonexistent.yaml")
    assert code == 2 and "no findings" not in out
    err = capsys.readouterr().err
    assert "automations/nonexistent.yaml does not exist" in err
    assert str(repo.path.resolve() / "mail/automations/nonexistent.yaml") in err


def test_a_path_the_branch_deleted_is_still_reported(repo: GitRepo) -> None:
    base = start(repo, "running")
    repo.remove("automations/welcome.yaml")
    repo.write("automations/other.yaml", automation("other", "draft"))
    repo.commit("delete while running")
    code, out = run("validate", "--base", base, "automations/welcome.yaml")
    assert code == 1 and "delete-running" in out


# --- judged as the runner applies it ---------------------------------------------------------


def test_a_typo_fixed_later_is_a_warning_naming_its_commit(repo: GitRepo) -> None:
    base = start(repo, "draft")
    repo.write(
        "automations/welcome.yaml", automation("welcome", "draft").replace("subject", "subjekt")
    )
    typo = repo.commit("typo")
    repo.write("automations/welcome.yaml", automation("welcome", "draft", subject="Hi"))
    repo.commit("fixed")
    code, out = run("validate", "--base", base)
    assert code == 0, out
    assert "warning[refused-then-repaired]" in out and f"[commit {typo[:7]}]" in out
    assert "error[" not in out
    code, out = run("validate", "--base", base, "--strict")
    assert code == 1


def test_an_invalid_new_file_removed_later_is_a_warning(repo: GitRepo) -> None:
    base = start(repo, "draft")
    repo.write("automations/spring.yaml", automation("spring", "paused"))  # a new file: no
    added = repo.commit("add spring paused")
    repo.remove("automations/spring.yaml")
    removed = repo.commit("remove it again")
    code, out = run("validate", "--base", base)
    assert code == 0, out
    assert f"commit {removed[:7]} repairs it" in out and f"[commit {added[:7]}]" in out


def test_a_yml_file_and_a_config_error_fixed_later_are_warnings(repo: GitRepo) -> None:
    base = start(repo, "draft")
    repo.write("automations/spring.yml", automation("spring", "draft"))
    repo.write("postwright.yaml", "max_emails_per_day: [\n")
    broken = repo.commit("a .yml file, a broken postwright.yaml")
    repo.move("automations/spring.yml", "automations/spring.yaml")
    repo.remove("postwright.yaml")
    repo.commit("fixed")
    code, out = run("validate", "--base", base)
    assert code == 0, out
    assert out.count("warning[refused-then-repaired]") == 2 and f"[commit {broken[:7]}]" in out
    assert "(wrong-extension); a later commit of the branch fixes it" in out


def test_stop_then_restart_still_fails(repo: GitRepo) -> None:
    base = start(repo, "running")
    repo.write("automations/welcome.yaml", automation("welcome", "stopped"))
    repo.commit("stop")
    repo.write("automations/welcome.yaml", automation("welcome", "running"))
    restart = repo.commit("restart")
    repo.write("README.md", "unrelated\n")
    repo.commit("unrelated")
    code, out = run("validate", "--base", base, "--format", "github")
    assert code == 1
    assert "::error file=automations/welcome.yaml,line=2" in out and "transition-not-allowed" in out
    assert restart[:7] in out
    assert "refused-then-repaired" not in out


def test_edit_while_running_repaired_by_pausing(repo: GitRepo) -> None:
    base = start(repo, "running")
    repo.write("automations/welcome.yaml", automation("welcome", "running", subject="New"))
    edit = repo.commit("edit while running")
    repo.write("automations/welcome.yaml", automation("welcome", "paused", subject="New"))
    pause = repo.commit("pause")
    code, out = run("validate", "--base", base, "--format", "json")
    assert code == 0
    assert '"rule": "refused-then-repaired"' in out and edit in out
    code, out = run("validate", "--base", base)
    assert f"commit {pause[:7]} repairs it" in out
    code, out = run("plan", "--base", base)
    assert code == 0, out


def test_annotations_only_on_head_lines_that_still_carry_the_finding(
    repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write("automations/welcome.yaml", automation("welcome", "draft"))
    repo.write("automations/news.yaml", automation("news", "running"))
    base = repo.commit("base")
    broken = automation("welcome", "draft").replace("subject", "subjekt")
    repo.write("automations/welcome.yaml", broken)
    typo = repo.commit("typo")
    repo.write("automations/welcome.yaml", "# a comment\n" + automation("welcome", "draft"))
    repo.write("automations/news.yaml", automation("news", "draft"))
    bad = repo.commit("fix the typo, news back to draft")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out = run("validate", "--base", base, "--format", "github")
    assert code == 1
    annotations = [line for line in out.splitlines() if line.startswith("::")]
    assert len(annotations) == 1, out
    assert annotations[0].startswith("::error file=automations/news.yaml,line=2")
    assert bad[:7] in annotations[0]
    assert "1 finding of an earlier commit is listed in the job summary" in out
    table = summary.read_text()
    assert "refused-then-repaired" in table and f"`{typo[:7]}`" in table


def test_squash_and_merge_commits_unaffected(repo: GitRepo) -> None:
    base = start(repo, "running")
    repo.branch("feature")
    repo.write("automations/welcome.yaml", automation("welcome", "paused"))
    repo.commit("pause")
    repo.write("automations/welcome.yaml", automation("welcome", "paused", subject="New"))
    repo.commit("edit while paused")
    repo.write("automations/welcome.yaml", automation("welcome", "running", subject="New"))
    repo.commit("restart")
    code, out = run("validate", "--base", base)
    assert code == 0 and "squash-unsafe" in out  # every commit legal, the net edit is not
    repo.checkout("main")
    repo.merge("feature", "merge feature")
    code, out = run("validate", "--base", base)
    assert code == 0 and "refused-then-repaired" not in out
    repo.git("reset", "-q", "--hard", base)
    repo.squash("feature", "squashed")
    code, out = run("validate", "--base", base)
    assert code == 1 and "edit-not-allowed" in out and "refused-then-repaired" not in out
