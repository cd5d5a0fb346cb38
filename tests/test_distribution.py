"""What users install besides the package: the Action, the pre-commit hooks, the rules doc.

The Action's script steps run here with bash against real git repositories,
with `env:` filled in from the inputs and a temporary GITHUB_STEP_SUMMARY.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- docs/rules.md --------------------------------------------------------------


def test_rules_doc_is_generated_from_the_catalogue() -> None:
    generated = _load_script("gen_rules_doc").render()
    current = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert current == generated, "run `python scripts/gen_rules_doc.py --write`"


def test_rules_doc_lists_every_rule_id() -> None:
    from runner.core.rules import RULES

    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert [rule for rule in RULES if f"| `{rule}` |" not in text] == []


def _version(status: str, *, edited: bool = False) -> Any:
    from runner.core.loader import load_automation
    from runner.core.version import Version

    start = "start_at: 2030-01-01T09:00:00Z\n" if status == "scheduled" else ""
    subject = "Changed" if edited else "Hello"
    text = (
        f"id: sample\nstatus: {status}\n{start}trigger: {{type: api}}\n"
        f"email: {{from: a@shop.postwright.dev, subject: {subject}, text: hi}}\n"
    )
    loaded = load_automation("automations/sample.yaml", text.encode())
    assert loaded.findings == ()
    return Version.of(loaded, {})


STATUSES = ("draft", "scheduled", "running", "paused", "stopped")
CELLS = [(p, c) for p in (None, *STATUSES) for c in STATUSES if p != c]


@pytest.mark.parametrize(("parent", "child"), CELLS, ids=lambda s: s or "new")
def test_transition_table_in_the_doc_is_what_lifecycle_enforces(
    parent: str | None, child: str
) -> None:
    from runner.core import lifecycle

    table: Mapping[str | None, Mapping[str, str]] = _load_script("gen_rules_doc").TRANSITIONS
    documented = table[parent].get(child, "no") != "no"
    parents = {} if parent is None else {"sample": _version(parent)}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    changes = lifecycle.check_step(parents, {"sample": _version(child)}, now)
    rules = {f.rule for change in changes for f in change.findings}
    assert ("transition-not-allowed" not in rules) == documented, rules


# --- .pre-commit-hooks.yaml ---------------------------------------------------------


def test_pre_commit_hooks_name_the_console_script() -> None:
    hooks: list[dict[str, Any]] = yaml.safe_load(
        (ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    by_id = {hook["id"]: hook for hook in hooks}
    assert set(by_id) == {"postwright-validate", "postwright-transitions", "postwright-simulate"}
    for hook in hooks:
        if hook["id"] == "postwright-simulate":
            continue  # its files are scenarios (tests/test_simulate_distribution.py)
        assert hook["language"] == "python"
        assert hook["entry"].split()[0] in project["scripts"]
        assert re.search(hook["files"], "automations/welcome.yaml")
        assert re.search(hook["files"], "automations/team/old.yml")  # reported, not skipped
        assert re.search(hook["files"], "templates/coupon.html")
    fast, push = by_id["postwright-validate"], by_id["postwright-transitions"]
    assert fast["pass_filenames"] is True and "stages" not in fast
    assert push["pass_filenames"] is False and push["stages"] == ["pre-push"]
    assert push["entry"] == "postwright validate --base auto"


# --- action.yml -------------------------------------------------------------------


@dataclass
class Step:
    """One `run:` step of the composite Action."""

    run: str
    env: dict[str, str]
    working_directory: str
    condition: str | None


def _action() -> dict[str, Any]:
    action: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    return action


def _expand(value: str, inputs: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("inputs."):
            return inputs[expression.removeprefix("inputs.")]
        assert expression == "github.action_path", f"unexpected expression {expression!r}"
        return str(ROOT)

    return EXPRESSION.sub(one, value)


def _step(step_id: str, given: Mapping[str, str]) -> Step:
    action = _action()
    inputs = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    inputs.update(given)
    [raw] = [s for s in action["runs"]["steps"] if s.get("id") == step_id]
    return Step(
        run=raw["run"],
        env={key: _expand(str(value), inputs) for key, value in raw.get("env", {}).items()},
        working_directory=_expand(raw.get("working-directory", "."), inputs),
        condition=raw.get("if"),
    )


@dataclass
class Ran:
    """The outcome of one script step."""

    code: int
    stdout: str
    stderr: str
    summary: str


def _run_step(
    step_id: str,
    repo: Path,
    summary: Path,
    path_prefix: Path,
    extra_env: Mapping[str, str] | None = None,
    **inputs: str,
) -> Ran:
    step = _step(step_id, inputs)
    script = repo.parent / f"{step_id}.sh"
    script.write_text(step.run, encoding="utf-8")
    env = {
        "PATH": f"{path_prefix}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(repo.parent),
        "GITHUB_STEP_SUMMARY": str(summary),
        **(extra_env or {}),
        **step.env,
    }
    # GitHub runs `shell: bash` steps as `bash --noprofile --norc -eo pipefail {0}`.
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=repo / step.working_directory,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr, summary.read_text(encoding="utf-8"))


def test_action_scripts_take_values_only_through_env() -> None:
    steps = _action()["runs"]["steps"]
    assert _action()["runs"]["using"] == "composite"
    assert {"install", "validate", "plan"} <= {s.get("id") for s in steps}
    for step in steps:
        if "run" in step:
            assert "${{" not in step["run"], step.get("id")
            assert step["shell"] == "bash"


def test_action_checks_out_the_pull_request_head_with_full_history() -> None:
    [checkout] = [s for s in _action()["runs"]["steps"] if "actions/checkout" in s.get("uses", "")]
    assert "github.event.pull_request.head.sha" in checkout["with"]["ref"]
    assert checkout["with"]["fetch-depth"] == 0
    assert _action()["inputs"]["base"]["default"] == "${{ github.event.pull_request.base.sha }}"


def test_plan_step_runs_after_a_failed_validation() -> None:
    steps = [s.get("id") for s in _action()["runs"]["steps"]]
    condition = _step("plan", {"base": "x"}).condition
    assert steps.index("plan") > steps.index("validate")
    assert condition is not None and "!cancelled()" in condition


def fake_postwright_in(tmp_path: Path) -> Path:
    """A folder holding a `postwright` that records its arguments (and exits FAKE_EXIT), next
    to an empty `repo` folder and `summary.md`: for the Action's scripts."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    fake = bin_dir / "postwright"
    fake.write_text('#!/bin/sh\necho "args: $*"\nexit "${FAKE_EXIT:-0}"\n', encoding="utf-8")
    fake.chmod(0o755)
    (tmp_path / "repo").mkdir()
    (tmp_path / "summary.md").write_text("", encoding="utf-8")
    return bin_dir


@pytest.fixture
def fake_postwright(tmp_path: Path) -> Path:
    """A `postwright` that records its arguments, to test the scripts' argument handling."""
    return fake_postwright_in(tmp_path)


def test_validate_script_passes_base_and_strict(fake_postwright: Path) -> None:
    repo, summary = fake_postwright.parent / "repo", fake_postwright.parent / "summary.md"
    ran = _run_step("validate", repo, summary, fake_postwright, base="abc123", strict="true")
    assert ran.code == 0
    assert "args: validate --repo . --format github --base abc123 --strict" in ran.stdout
    ran = _run_step("validate", repo, summary, fake_postwright, base="", strict="false")
    assert "args: validate --repo . --format github\n" in ran.stdout
    assert "::notice" in ran.stdout


def test_plan_script_fails_only_when_plan_could_not_run(fake_postwright: Path) -> None:
    repo, summary = fake_postwright.parent / "repo", fake_postwright.parent / "summary.md"
    for exit_code, expected in (("0", 0), ("1", 0), ("2", 2)):
        fake = {"FAKE_EXIT": exit_code}
        ran = _run_step("plan", repo, summary, fake_postwright, fake, base="abc123")
        assert ran.code == expected
    assert "args: plan --repo . --format markdown --base abc123" in summary.read_text(
        encoding="utf-8"
    )


# --- the Action against real repositories ---------------------------------------


class Repo:
    """A throwaway git repository with automation files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@shop.postwright.dev",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@shop.postwright.dev",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        done = subprocess.run(
            ["git", "-c", "commit.gpgsign=false", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def write(self, automation_id: str, status: str = "running", subject: str = "Hello") -> None:
        path = self.root / "automations" / f"{automation_id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"id: {automation_id}\nstatus: {status}\ntrigger:\n  type: api\nemail:\n"
            f'  from: "Shop <news@shop.postwright.dev>"\n  subject: "{subject}"\n'
            "  text: Hello from the shop\n",
            encoding="utf-8",
        )

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


EDITED = [f"promo-{n:02d}" for n in range(1, 13)]  # more than GitHub shows per step


@pytest.fixture
def pr(tmp_path: Path) -> tuple[Repo, str, Path]:
    """A repository with running automations on main and a base sha."""
    repo = Repo(tmp_path / "repo")
    for automation_id in ["welcome", *EDITED]:
        repo.write(automation_id)
    base = repo.commit("base")
    summary = tmp_path / "summary.md"
    summary.write_text("", encoding="utf-8")
    return repo, base, summary


def test_action_on_a_legal_pull_request(pr: tuple[Repo, str, Path]) -> None:
    repo, base, summary = pr
    repo.write("spring-sale", status="draft")
    repo.write("welcome", status="paused")
    repo.commit("add a draft, pause welcome")
    validated = _run_step("validate", repo.root, summary, VENV_BIN, base=base)
    assert validated.code == 0, validated.stdout + validated.stderr
    assert "::error" not in validated.stdout
    planned = _run_step("plan", repo.root, summary, VENV_BIN, base=base)
    assert planned.code == 0
    assert "spring-sale" in planned.summary
    assert "paused" in planned.summary


def test_action_on_an_illegal_pull_request(pr: tuple[Repo, str, Path]) -> None:
    repo, base, summary = pr
    for automation_id in EDITED:
        repo.write(automation_id, subject="Edited while running")
    repo.commit("edit running automations")
    validated = _run_step("validate", repo.root, summary, VENV_BIN, base=base)
    assert validated.code == 1, validated.stderr
    assert "Traceback" not in validated.stderr
    annotation = re.compile(r"^::error file=automations/promo-\d\d\.yaml,line=\d+", re.M)
    assert annotation.search(validated.stdout), validated.stdout
    assert "edit-not-allowed" in validated.stdout
    # The full list is in the summary, even where GitHub would cut the annotations short.
    missing = [a for a in EDITED if f"automations/{a}.yaml" not in validated.summary]
    assert missing == []
    assert "edit-not-allowed" in validated.summary
    planned = _run_step("plan", repo.root, summary, VENV_BIN, base=base)
    assert planned.code == 0  # the failure is validate's; the plan is still written
    assert planned.summary.startswith(validated.summary)
    assert len(planned.summary) > len(validated.summary)
    assert "promo-01" in planned.summary[len(validated.summary) :]


def test_action_in_a_monorepo_working_directory(tmp_path: Path) -> None:
    repo = Repo(tmp_path / "repo")
    repo.write("welcome")
    (repo.root / "mail").mkdir()
    (repo.root / "automations").rename(repo.root / "mail" / "automations")
    base = repo.commit("base")
    text = (repo.root / "mail/automations/welcome.yaml").read_text(encoding="utf-8")
    (repo.root / "mail/automations/welcome.yaml").write_text(
        text.replace("status: running", "status: draft"), encoding="utf-8"
    )
    repo.commit("back to draft")
    summary = tmp_path / "summary.md"
    summary.write_text("", encoding="utf-8")
    inputs = {"base": base, "working-directory": "mail"}
    validated = _run_step("validate", repo.root, summary, VENV_BIN, None, **inputs)
    assert validated.code == 1, validated.stdout + validated.stderr
    # Annotations name the file from the checkout's top, where GitHub looks for it.
    assert "::error file=mail/automations/welcome.yaml,line=2" in validated.stdout
    assert "`mail/automations/welcome.yaml:2`" in validated.summary
    planned = _run_step("plan", repo.root, summary, VENV_BIN, None, **inputs)
    assert planned.code == 0
    assert "mail/automations/welcome.yaml" in planned.summary[len(validated.summary) :]


# --- README -----------------------------------------------------------------------


def test_readme_lists_every_example_and_links_existing_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = sorted(p.name for p in (ROOT / "automations").rglob("*.yaml"))
    assert [name for name in examples if f"(automations/{name})" not in readme] == []
    targets = (
        "docs/rules.md",
        "docs/file-format.md",
        "docs/events.md",
        "docs/postwright.example.yaml",
    )
    for target in targets:
        assert f"({target})" in readme
        assert (ROOT / target).is_file()
    assert "make run" in readme and "make test" in readme
