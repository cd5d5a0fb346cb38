"""`simulate` as users install it: the pre-commit hook and the Action's step, its script run
with bash against real repositories (docs/simulate.md "In CI and pre-commit")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_distribution import ROOT, VENV_BIN, _action, _run_step, fake_postwright_in

WELCOME = """\
id: welcome
status: running
trigger: {type: event, event: subscriber.added}
email:
  from: "Shop <news@shop.postwright.dev>"
  subject: "Welcome"
  text: Hello from the shop
"""

SCENARIO = """\
now: 2027-01-04T09:00:00Z
events:
  - {at: +0s, event: subscriber.added, email: ana@example.com}
expect:
  sends:
    - {to: ana@example.com, automation: welcome, at: +0s}
"""


def test_the_simulate_hook_runs_every_scenario_when_one_changes() -> None:
    hooks: list[dict[str, Any]] = yaml.safe_load(
        (ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    )
    [hook] = [h for h in hooks if h["id"] == "postwright-simulate"]
    assert hook["entry"] == "postwright simulate"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False  # every scenario, not only the changed one
    assert re.search(hook["files"], "scenarios/new-subscriber.yaml")
    assert re.search(hook["files"], "scenarios/team/cart.yml")
    assert not re.search(hook["files"], "automations/welcome.yaml")


def test_the_simulate_step_runs_after_validate_even_when_it_failed() -> None:
    steps = _action()["runs"]["steps"]
    ids = [s.get("id") for s in steps]
    assert ids.index("simulate") > ids.index("validate")
    [step] = [s for s in steps if s.get("id") == "simulate"]
    assert "!cancelled()" in step["if"]
    assert _action()["inputs"]["simulate"]["default"] == "auto"


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A `postwright` that records its arguments."""
    return fake_postwright_in(tmp_path)


@pytest.mark.parametrize(
    ("simulate", "folder", "code", "called"),
    [
        ("auto", False, 0, False),
        ("auto", True, 0, True),
        ("true", False, 0, True),
        ("false", True, 0, False),
        ("maybe", True, 2, False),
    ],
)
def test_the_simulate_script_follows_its_input(
    fake_bin: Path, simulate: str, folder: bool, code: int, called: bool
) -> None:
    repo, summary = fake_bin.parent / "repo", fake_bin.parent / "summary.md"
    if folder:
        (repo / "scenarios").mkdir()
    ran = _run_step("simulate", repo, summary, fake_bin, simulate=simulate)
    assert ran.code == code, ran.stdout + ran.stderr
    assert ("args: simulate --repo . --format github" in ran.stdout) is called
    if code == 2:
        assert "::error title=Postwright::input simulate is auto, true or false" in ran.stdout


def test_the_simulate_script_passes_the_exit_code_on(fake_bin: Path) -> None:
    repo, summary = fake_bin.parent / "repo", fake_bin.parent / "summary.md"
    ran = _run_step("simulate", repo, summary, fake_bin, {"FAKE_EXIT": "1"}, simulate="true")
    assert ran.code == 1


def _repo(tmp_path: Path, scenario: str) -> tuple[Path, Path]:
    repo = tmp_path / "team"
    (repo / "automations").mkdir(parents=True)
    (repo / "automations" / "welcome.yaml").write_text(WELCOME, encoding="utf-8")
    (repo / "scenarios").mkdir()
    (repo / "scenarios" / "welcome.yaml").write_text(scenario, encoding="utf-8")
    summary = tmp_path / "summary.md"
    summary.write_text("", encoding="utf-8")
    return repo, summary


def test_the_action_runs_a_repository_s_scenarios(tmp_path: Path) -> None:
    repo, summary = _repo(tmp_path, SCENARIO)
    ran = _run_step("simulate", repo, summary, VENV_BIN)
    assert ran.code == 0, ran.stdout + ran.stderr
    assert "::error" not in ran.stdout
    assert "| +0s | sent | ana@example.com | `welcome` | Welcome |" in ran.summary


def test_the_action_annotates_a_missed_expectation(tmp_path: Path) -> None:
    repo, summary = _repo(tmp_path, SCENARIO.replace("at: +0s}", "at: +1d}"))
    ran = _run_step("simulate", repo, summary, VENV_BIN)
    assert ran.code == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.stdout.startswith("::error file=scenarios/welcome.yaml,line=6,")
    assert "**missed**" in ran.summary
