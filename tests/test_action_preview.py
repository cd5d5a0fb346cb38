"""The Action's preview and sticky-comment scripts, run with bash as GitHub runs them: against
a real repository, the real `postwright`, and a fake of GitHub's two comment endpoints on
127.0.0.1 (reached through a stand-in for `gh api`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.fakes import serve
from tests.fakes.github import GH_SHIM, FakeGitHub
from tests.gitrepo import GitRepo
from tests.test_distribution import VENV_BIN, _action

ROOT = Path(__file__).resolve().parent.parent
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")
MARKER = "<!-- postwright-preview -->"


def automation(ident: str, status: str = "running", subject: str = "Hello") -> str:
    return (
        f"id: {ident}\nstatus: {status}\ntrigger: {{type: api}}\nemail:\n"
        f'  from: "Shop <news@shop.test>"\n  subject: "{subject}"\n'
        "  html: '<h1>Hello {{ subscriber.fields.first_name }}</h1>'\n"
    )


def run_step(
    step_id: str, cwd: Path, env: Mapping[str, str], context: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run one `run:` step with bash, its `${{ }}` env values taken from `context`."""
    [raw] = [s for s in _action()["runs"]["steps"] if s.get("id") == step_id]
    assert "${{" not in raw["run"]

    def expand(value: str) -> str:
        return EXPRESSION.sub(lambda m: context[m.group(1)], value)

    step_env = {key: expand(str(value)) for key, value in raw.get("env", {}).items()}
    script = cwd.parent / f"{step_id}.sh"
    script.write_text(raw["run"], encoding="utf-8")
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=cwd,
        env={**env, **step_env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def pr(tmp_path: Path) -> tuple[GitRepo, str]:
    repo = GitRepo(tmp_path / "repo")
    repo.write("automations/welcome.yaml", automation("welcome"))
    repo.write("automations/intro.yaml", automation("intro"))
    base = repo.commit("base")
    repo.write("automations/welcome.yaml", automation("welcome", status="paused"))
    repo.commit("pause welcome")
    return repo, base


def environment(tmp_path: Path, *, bin_dirs: list[Path]) -> dict[str, str]:
    for name in ("summary.md", "output.txt"):
        (tmp_path / name).write_text("", encoding="utf-8")
    (tmp_path / "runner-temp").mkdir(exist_ok=True)
    return {
        "PATH": os.pathsep.join([*map(str, bin_dirs), os.environ["PATH"]]),
        "HOME": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "RUNNER_TEMP": str(tmp_path / "runner-temp"),
        "POSTWRIGHT_CHROMIUM": str(tmp_path / "no-browser"),  # screenshots are tested elsewhere
    }


def test_preview_step_writes_the_folder_the_summary_and_the_output(
    pr: tuple[GitRepo, str], tmp_path: Path
) -> None:
    repo, base = pr
    env = environment(tmp_path, bin_dirs=[VENV_BIN])
    ran = run_step("preview", repo.path, env, {"inputs.base": base})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = tmp_path / "runner-temp" / "postwright-preview"
    assert (tmp_path / "output.txt").read_text() == f"dir={out}\n"
    summary = (tmp_path / "summary.md").read_text()
    assert summary == (out / "index.md").read_text()
    assert "**Lifecycle:** running → paused" in summary and "intro" not in summary
    assert "Hello Alex" in (out / "welcome" / "email.html").read_text()


def test_preview_step_fails_when_the_preview_cannot_run(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.write("automations/welcome.yaml", automation("welcome"))
    repo.commit("base")
    env = environment(tmp_path, bin_dirs=[VENV_BIN])
    ran = run_step("preview", repo.path, env, {"inputs.base": "no-such-ref"})
    assert ran.returncode == 2
    assert (tmp_path / "output.txt").read_text() == ""  # nothing to upload or comment


@pytest.fixture
def gh(tmp_path: Path) -> Path:
    if shutil.which("jq") is None:  # the comment script builds its JSON with jq
        if os.environ.get("CI"):
            pytest.fail("jq is not installed (.ci/run installs it)")
        pytest.skip("jq is not installed")
    bin_dir = tmp_path / "ghbin"
    bin_dir.mkdir()
    shim = bin_dir / "gh"
    shim.write_text(f"#!{sys.executable}\n{GH_SHIM}", encoding="utf-8")
    shim.chmod(0o755)
    return bin_dir


def test_the_comment_is_created_once_then_updated_in_place(
    pr: tuple[GitRepo, str], tmp_path: Path, gh: Path
) -> None:
    repo, base = pr
    fake = FakeGitHub(token="gh-token")
    for n in range(3):  # other comments, over two pages before ours
        fake.add(7, f"a reviewer's comment {n}")
    env = environment(tmp_path, bin_dirs=[gh, VENV_BIN])
    out = tmp_path / "runner-temp" / "postwright-preview"
    with serve(fake.app()) as url:
        env["FAKE_GH_API"] = url
        context = {
            "inputs.github-token": "gh-token",
            "steps.preview.outputs.dir": str(out),
            "github.event.pull_request.number": "7",
            "github.repository": "shop/mail",
            "github.server_url": "https://github.com",
            "github.run_id": "42",
        }
        assert run_step("preview", repo.path, env, {"inputs.base": base}).returncode == 0
        first = run_step("comment", repo.path, env, context)
        assert first.returncode == 0, first.stderr
        assert "created the preview comment" in first.stdout
        ours = [c for c in fake.comments[7] if c["body"].startswith(MARKER)]
        assert len(ours) == 1
        assert "**Lifecycle:** running → paused" in ours[0]["body"]
        assert "[this run](https://github.com/shop/mail/actions/runs/42)" in ours[0]["body"]
        # A new push: the preview changes, the same comment is rewritten.
        repo.write("automations/intro.yaml", automation("intro", status="stopped"))
        repo.commit("stop intro")
        assert run_step("preview", repo.path, env, {"inputs.base": base}).returncode == 0
        fake.add(7, "another reviewer's comment")
        second = run_step("comment", repo.path, env, context)
        assert second.returncode == 0, second.stderr
        assert f"updated the preview comment {ours[0]['id']}" in second.stdout
    ours = [c for c in fake.comments[7] if c["body"].startswith(MARKER)]
    assert len(ours) == 1 and len(fake.comments[7]) == 5
    assert "**Lifecycle:** running → stopped" in ours[0]["body"]
    assert ("PATCH", f"/repos/shop/mail/issues/comments/{ours[0]['id']}") in fake.calls
    assert sum(1 for method, _ in fake.calls if method == "POST") == 1


def test_a_wrong_token_fails_the_step_and_outside_a_pull_request_nothing_is_called(
    pr: tuple[GitRepo, str], tmp_path: Path, gh: Path
) -> None:
    repo, base = pr
    fake = FakeGitHub(token="gh-token")
    env = environment(tmp_path, bin_dirs=[gh, VENV_BIN])
    out = tmp_path / "runner-temp" / "postwright-preview"
    context = {
        "inputs.github-token": "wrong",
        "steps.preview.outputs.dir": str(out),
        "github.event.pull_request.number": "7",
        "github.repository": "shop/mail",
        "github.server_url": "https://github.com",
        "github.run_id": "42",
    }
    with serve(fake.app()) as url:
        env["FAKE_GH_API"] = url
        assert run_step("preview", repo.path, env, {"inputs.base": base}).returncode == 0
        assert run_step("comment", repo.path, env, context).returncode != 0
        calls = len(fake.calls)
        ran = run_step(
            "comment", repo.path, env, context | {"github.event.pull_request.number": ""}
        )
        assert ran.returncode == 0 and "not a pull request" in ran.stdout
        assert len(fake.calls) == calls
    assert not fake.comments.get(7)  # nothing was written
