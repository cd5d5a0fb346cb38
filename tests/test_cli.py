"""The command line end to end on real git repositories: exit codes, filters, golden output.

Golden files live in tests/golden/; `UPDATE_GOLDEN=1 pytest tests/test_cli.py`
rewrites them. Commit ids are masked as `<name>` so the files survive any
change of git's object format.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest

from runner.cli.main import main
from runner.core.schema import schema_text

GOLDEN = Path(__file__).parent / "golden"
REPO_ROOT = Path(__file__).parent.parent
NOW = "2026-12-01T00:00:00Z"


def automation(
    id: str, status: str = "running", subject: str = "Hello", name: str | None = None
) -> str:
    """A small valid automation file."""
    return (
        f"id: {id}\n"
        f"name: {name or id.title()}\n"
        f"status: {status}\n"
        "trigger:\n"
        "  type: event\n"
        "  event: subscriber.added\n"
        "email:\n"
        '  from: "Shop <news@shop.postwright.dev>"\n'
        f'  subject: "{subject}"\n'
        '  text: "Hello {{ subscriber.email }}"\n'
    )


def scheduled(id: str, start_at: str) -> str:
    """A scheduled automation starting at `start_at`."""
    return automation(id, "scheduled").replace(
        "status: scheduled\n", f"status: scheduled\nstart_at: {start_at}\n"
    )


class Repo:
    """A real git repository in tmp_path with fixed dates, so commit ids are stable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commits: dict[str, str] = {}
        self._tick = 0
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.name", "Test")
        self.git("config", "user.email", "test@postwright.dev")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str) -> str:
        date = f"2026-11-0{1 + self._tick}T10:00:00+00:00"
        env = {
            **os.environ,
            "GIT_AUTHOR_DATE": date,
            "GIT_COMMITTER_DATE": date,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.root),
        }
        done = subprocess.run(
            ["git", *args], cwd=self.root, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def remove(self, path: str) -> None:
        (self.root / path).unlink()

    def commit(self, name: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", name)
        self._tick += 1
        sha = self.git("rev-parse", "HEAD")
        self.commits[name] = sha
        return sha

    def mask(self, text: str) -> str:
        """Replace every commit id (full or short) by `<name>`."""
        for name, sha in self.commits.items():
            text = text.replace(sha, f"<{name}>").replace(sha[:7], f"<{name}>")
        return text.replace(str(self.root), "<repo>")


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run inside GitHub Actions too: never append to the real job summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


def run(repo: Repo, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([*argv, "--repo", str(repo.root), "--now", NOW], stdout=out)
    return code, out.getvalue()


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def history(tmp_path: Path) -> Repo:
    """base: five automations; c2: an edit while running, a pause, a move; c3: a create
    and a delete; uncommitted: an invalid file, a `.yml` file, a start that has passed."""
    repo = Repo(tmp_path / "repo")
    repo.write("automations/welcome.yaml", automation("welcome"))
    repo.write("automations/digest.yaml", automation("digest"))
    repo.write("automations/cart.yaml", automation("cart", status="paused"))
    repo.write("automations/intro.yaml", automation("intro", status="draft"))
    repo.write("automations/order.yaml", automation("order"))
    repo.commit("base")
    repo.write("automations/welcome.yaml", automation("welcome", subject="Welcome aboard"))
    repo.write("automations/digest.yaml", automation("digest", "paused", name="Weekly digest"))
    repo.remove("automations/cart.yaml")
    repo.write("automations/shop/cart.yaml", automation("cart", status="paused"))
    repo.commit("c2")
    repo.remove("automations/intro.yaml")
    repo.write("automations/coupon.yaml", automation("coupon", status="draft"))
    repo.commit("c3")
    repo.write("automations/broken.yaml", automation("broken") + "colour: blue\n")
    repo.write("automations/old.yml", automation("old"))
    repo.write("automations/later.yaml", scheduled("later", "2026-11-01T00:00:00Z"))
    return repo


@pytest.fixture
def clean(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "clean")
    repo.write("automations/welcome.yaml", automation("welcome"))
    repo.commit("base")
    return repo


# --- validate: exit codes, filters -------------------------------------------


def test_validate_clean_repo_exits_0(clean: Repo) -> None:
    assert run(clean, "validate") == (0, "no findings\n")


def test_validate_errors_exit_1(history: Repo) -> None:
    code, out = run(history, "validate")
    assert code == 1
    assert "automations/broken.yaml:" in out
    assert "error[wrong-extension]" in out


def test_validate_paths_filter_findings(history: Repo) -> None:
    code, out = run(history, "validate", str(history.root / "automations/old.yml"))
    assert code == 1
    assert out.startswith("automations/old.yml:1:1: error[wrong-extension]")
    assert "broken.yaml" not in out


def test_validate_paths_widen_from_a_template_to_its_automations(clean: Repo) -> None:
    """A hook passes only the changed template; findings of the automations using it count."""
    clean.write(
        "automations/welcome.yaml",
        automation("welcome").replace(
            '  text: "Hello {{ subscriber.email }}"\n', "  html_file: ../templates/welcome.html\n"
        ),
    )
    clean.write("templates/welcome.html", "<p>Hello</p>")
    base = clean.commit("with-template")
    clean.write("templates/welcome.html", "<p>Hello again</p>")
    code, out = run(clean, "validate", "--base", base, str(clean.root / "templates/welcome.html"))
    assert code == 1
    assert out.startswith("automations/welcome.yaml:10:3: error[edit-not-allowed]")


def test_validate_paths_relative_to_cwd(history: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(history.root / "automations")
    code, out = run(history, "validate", "welcome.yaml")
    assert (code, out) == (0, "no findings\n")


def test_validate_strict_fails_on_warnings(clean: Repo) -> None:
    # A scheduled start that has passed is a warning (start-at-passed / stale-status).
    clean.write("automations/later.yaml", scheduled("later", "2026-11-01T00:00:00Z"))
    code, out = run(clean, "validate")
    assert code == 0, out
    assert "warning[" in out
    strict_code, strict_out = run(clean, "validate", "--strict")
    assert (strict_code, strict_out) == (1, out)


def test_validate_missing_repo_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--repo", str(tmp_path / "nowhere")], stdout=io.StringIO())
    assert code == 2
    assert "is not a folder" in capsys.readouterr().err


def test_bad_now_is_a_usage_error(clean: Repo) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["validate", "--repo", str(clean.root), "--now", "tomorrow"], stdout=io.StringIO())
    assert raised.value.code == 2


def test_validate_unknown_base_exits_2(clean: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(clean, "validate", "--base", "no-such-ref")
    assert code == 2
    assert out == ""
    assert "no-such-ref" in capsys.readouterr().err


def test_plan_unknown_base_exits_2(clean: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(clean, "plan", "--base", "no-such-ref") == (2, "")
    assert "no-such-ref" in capsys.readouterr().err


def test_validate_base_names_the_commit(history: Repo) -> None:
    code, out = run(history, "validate", "--base", history.commits["base"])
    assert code == 1
    c2 = history.commits["c2"][:7]
    edit = next(line for line in out.splitlines() if "[edit-not-allowed]" in line)
    assert edit.startswith("automations/welcome.yaml:")
    assert edit.endswith(f"[commit {c2}]")


def test_github_format_writes_the_step_summary(
    history: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out = run(history, "validate", "--format", "github")
    assert code == 1
    assert out.startswith("::error file=automations/")
    text = summary.read_text(encoding="utf-8")
    assert "| file:line | severity | rule | message | help | commit |" in text
    assert "| `automations/old.yml:1` | error | `wrong-extension` |" in text


def test_text_format_ignores_the_step_summary(
    history: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert run(history, "validate")[0] == 1
    assert not summary.exists()


# --- golden output -------------------------------------------------------------

VALIDATE_FORMATS = [("text", "txt"), ("json", "json"), ("github", "txt")]
PLAN_FORMATS = [("text", "txt"), ("json", "json"), ("markdown", "md")]


@pytest.mark.parametrize(("fmt", "ext"), VALIDATE_FORMATS)
def test_validate_golden(history: Repo, fmt: str, ext: str) -> None:
    code, out = run(history, "validate", "--format", fmt)
    assert code == 1
    assert_golden(f"validate.{fmt}.{ext}", history.mask(out))


@pytest.mark.parametrize(("fmt", "ext"), VALIDATE_FORMATS)
def test_validate_base_golden(history: Repo, fmt: str, ext: str) -> None:
    code, out = run(history, "validate", "--base", history.commits["base"], "--format", fmt)
    assert code == 1
    assert_golden(f"validate-base.{fmt}.{ext}", history.mask(out))


@pytest.mark.parametrize(("fmt", "ext"), PLAN_FORMATS)
def test_plan_golden(history: Repo, fmt: str, ext: str) -> None:
    code, out = run(history, "plan", "--base", history.commits["base"], "--format", fmt)
    assert code == 1  # the edit of a running automation is blocked
    assert_golden(f"plan.{fmt}.{ext}", history.mask(out))


# --- plan ------------------------------------------------------------------------


def test_plan_without_base_compares_working_tree_with_head(clean: Repo) -> None:
    clean.write("automations/welcome.yaml", automation("welcome", "paused"))
    code, out = run(clean, "plan", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert document["head"] is None
    assert document["base"] == clean.commits["base"]
    (entry,) = document["automations"]
    assert (entry["id"], entry["change"]) == ("welcome", "modified")
    assert entry["status"] == {"from": "running", "to": "paused"}


def test_plan_of_nothing_exits_0(clean: Repo) -> None:
    code, out = run(clean, "plan")
    assert code == 0
    assert out.endswith("no automation changes (1 unchanged)\n")


def test_plan_blocked_exits_1(clean: Repo) -> None:
    clean.write("automations/welcome.yaml", automation("welcome", subject="Changed"))
    code, out = run(clean, "plan")
    assert code == 1
    assert "blocked: edit-not-allowed" in out


# --- schema ----------------------------------------------------------------------


def test_schema_prints_the_checked_in_schema(clean: Repo) -> None:
    out = io.StringIO()
    assert main(["schema"], stdout=out) == 0
    checked_in = (REPO_ROOT / "schema" / "automation.schema.json").read_text(encoding="utf-8")
    assert out.getvalue() == checked_in == schema_text()
