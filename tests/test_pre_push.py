"""The pre-push hook (`postwright-transitions` of .pre-commit-hooks.yaml) run by pre-commit
itself, in a clone of a bare remote on disk; and `--base auto`'s choices one by one."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.cli.main import main
from tests.gitrepo import GitRepo, automation, run_git

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NOW = "2026-06-01T12:00:00Z"
ZEROS = "0" * 40


def _hook(hook_id: str) -> dict[str, Any]:
    """The hook as shipped, run from this checkout's virtualenv (`language: system`)."""
    hooks: list[dict[str, Any]] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    [hook] = [h for h in hooks if h["id"] == hook_id]
    return {**hook, "language": "system", "entry": f"{VENV_BIN}/{hook['entry']}"}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PRE_COMMIT", "GIT_")) and key != "GITHUB_STEP_SUMMARY"
    }
    return {
        **env,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path),
    }


@pytest.fixture
def clone(tmp_path: Path) -> GitRepo:
    """A clone of a bare remote whose main has a running automation, the hook installed."""
    seed = GitRepo(tmp_path / "seed")
    seed.write("automations/welcome.yaml", automation("welcome", "running"))
    seed.write(
        ".pre-commit-config.yaml",
        yaml.safe_dump({"repos": [{"repo": "local", "hooks": [_hook("postwright-transitions")]}]}),
    )
    seed.commit("base")
    run_git(tmp_path, "init", "-q", "--bare", "-b", "main", "remote.git")
    seed.git("push", "-q", str(tmp_path / "remote.git"), "main")
    run_git(tmp_path, "clone", "-q", str(tmp_path / "remote.git"), "clone")
    repo = GitRepo(tmp_path / "clone", init=False)
    for key, value in (("user.name", "Test"), ("user.email", "t@example.test")):
        repo.git("config", key, value)
    repo.git("config", "commit.gpgsign", "false")
    _run(repo, tmp_path, f"{VENV_BIN}/pre-commit", "install", "--hook-type", "pre-push")
    return repo


def _run(repo: GitRepo, tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=repo.path, env=_env(tmp_path), capture_output=True, text=True, check=False
    )


def test_first_push_of_a_new_legal_branch_passes(clone: GitRepo, tmp_path: Path) -> None:
    clone.branch("feature")
    clone.write("automations/welcome.yaml", automation("welcome", "paused"))
    clone.write("automations/spring.yaml", automation("spring", "draft"))
    clone.commit("pause welcome, add a draft")
    pushed = _run(clone, tmp_path, "git", "push", "-u", "origin", "feature")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "postwright lifecycle transitions" in pushed.stdout + pushed.stderr
    assert "Passed" in pushed.stdout + pushed.stderr
    # The next push of the branch is judged from its upstream.
    clone.write("automations/welcome.yaml", automation("welcome", "stopped"))
    clone.commit("stop welcome")
    pushed = _run(clone, tmp_path, "git", "push")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr


def test_first_push_of_a_new_illegal_branch_fails(clone: GitRepo, tmp_path: Path) -> None:
    clone.branch("feature")
    clone.write("automations/welcome.yaml", automation("welcome", "draft"))
    clone.commit("back to draft")
    pushed = _run(clone, tmp_path, "git", "push", "-u", "origin", "feature")
    output = pushed.stdout + pushed.stderr
    assert pushed.returncode != 0, output
    assert "transition-not-allowed" in output
    assert "no upstream configured" not in output
    assert run_git(tmp_path / "remote.git", "branch", "--list", "feature") == ""


def test_a_later_push_with_an_illegal_commit_fails(clone: GitRepo, tmp_path: Path) -> None:
    clone.branch("feature")
    clone.write("automations/welcome.yaml", automation("welcome", "stopped"))
    clone.commit("stop")
    assert _run(clone, tmp_path, "git", "push", "-u", "origin", "feature").returncode == 0
    clone.write("automations/welcome.yaml", automation("welcome", "running"))
    clone.commit("restart")
    pushed = _run(clone, tmp_path, "git", "push")
    assert pushed.returncode != 0
    assert "transition-not-allowed" in pushed.stdout + pushed.stderr


# --- --base auto, choice by choice -----------------------------------------------------------


def _auto(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, str, str]:
    for name in ("PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_REMOTE_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(repo.path)
    out = io.StringIO()
    code = main(["validate", "--base", "auto", "--now", NOW], stdout=out)
    return code, out.getvalue(), capsys.readouterr().err


def test_auto_uses_the_pre_commit_refs(
    clone: GitRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = clone.head()
    clone.branch("feature")
    clone.write("automations/welcome.yaml", automation("welcome", "draft"))
    pushed = clone.commit("illegal")
    clone.write("automations/welcome.yaml", "not: [valid")  # uncommitted: not pushed
    code, out, err = _auto(
        clone, monkeypatch, capsys, PRE_COMMIT_FROM_REF=base, PRE_COMMIT_TO_REF=pushed
    )
    assert code == 1 and "transition-not-allowed" in out and "yaml-syntax" not in out
    assert f"judging since {base[:7]}, the remote side of the push" in err


def test_auto_with_an_all_zero_from_ref_uses_origin_head(
    clone: GitRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clone.branch("feature")
    clone.write("automations/welcome.yaml", automation("welcome", "paused"))
    head = clone.commit("pause")
    code, out, err = _auto(
        clone, monkeypatch, capsys, PRE_COMMIT_FROM_REF=ZEROS, PRE_COMMIT_TO_REF=head
    )
    assert code == 0, out
    assert "the merge base with origin/main, the remote's default branch" in err


def test_auto_falls_back_to_origin_main_then_master(
    clone: GitRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clone.git("remote", "set-head", "origin", "--delete")
    clone.branch("feature")
    clone.write("automations/welcome.yaml", automation("welcome", "draft"))
    clone.commit("illegal")
    code, out, err = _auto(clone, monkeypatch, capsys)
    assert code == 1 and "transition-not-allowed" in out
    assert "the merge base with origin/main" in err
    clone.git("update-ref", "refs/remotes/origin/master", "refs/remotes/origin/main")
    clone.git("update-ref", "-d", "refs/remotes/origin/main")
    code, out, err = _auto(clone, monkeypatch, capsys)
    assert code == 1 and "the merge base with origin/master" in err


def test_auto_prefers_the_upstream(
    clone: GitRepo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _auto(clone, monkeypatch, capsys)
    assert code == 0
    assert "judging since origin/main, the branch's upstream" in err


def test_auto_without_any_remote_checks_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = GitRepo(tmp_path / "alone")
    repo.write("automations/welcome.yaml", automation("welcome", "running"))
    repo.commit("one")
    code, out, err = _auto(repo, monkeypatch, capsys)
    assert code == 0 and "no findings" in out
    assert "no base found" in err
    repo.write("automations/welcome.yaml", "id: welcome\nstatus: [\n")
    code, out, err = _auto(repo, monkeypatch, capsys)
    assert code == 1 and "yaml-syntax" in out
