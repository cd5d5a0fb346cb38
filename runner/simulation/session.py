"""`simulate` from files to outcomes: find and check the scenario files, check the
automations as the runner would at each scenario's start, run, judge (docs/simulate.md)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runner.checking.tree import Tree, check_working_tree
from runner.core.findings import Severity
from runner.core.model import ApiTrigger
from runner.errors import PostwrightError
from runner.repo.files import walk_directory
from runner.simulation.expectations import judge
from runner.simulation.report import Outcome
from runner.simulation.run import Applier, simulate
from runner.simulation.scenario import (
    Problem,
    Scenario,
    ScenarioError,
    load_scenario,
    shown_path,
)

SCENARIOS_DIR = "scenarios"
SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")


class CannotRun(PostwrightError):
    """Scenario files (or the automations) that cannot run; `problems` name file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


def scenario_files(root: Path, given: Sequence[str]) -> list[Path]:
    """The files named, or every scenario file under `scenarios/`; CannotRun when none."""
    if given:
        return [Path(name) for name in given]
    found = [
        root / path
        for path in walk_directory(root, [SCENARIOS_DIR])
        if path.endswith(SCENARIO_SUFFIXES)
    ]
    if not found:
        message = f"no scenario files given, and none ({', '.join(SCENARIO_SUFFIXES)}) in "
        message += f"{SCENARIOS_DIR}/ of {root}"
        raise CannotRun([Problem(SCENARIOS_DIR, 1, 1, "scenario-missing", message)])
    return sorted(found)


def load_all(root: Path, files: Sequence[Path]) -> list[tuple[Scenario, Tree]]:
    """Every scenario with the automations checked at its start; CannotRun with every problem."""
    problems: list[Problem] = []
    loaded: list[tuple[Scenario, Tree]] = []
    for file in files:
        try:
            scenario = load_scenario(file, shown_path(file, root))
        except ScenarioError as error:
            problems.extend(error.problems)
            continue
        tree = check_working_tree(root, scenario.start)
        errors = [f for f in tree.findings if f.severity is Severity.ERROR]
        problems.extend(Problem(f.path, f.line, f.col, f.rule, f.message) for f in errors)
        if not errors:
            problems.extend(reference_problems(scenario, tree))
            loaded.append((scenario, tree))
    if problems:
        unique = sorted(set(problems), key=lambda p: (p.path, p.line, p.col, p.message))
        raise CannotRun(unique)
    return loaded


def reference_problems(scenario: Scenario, tree: Tree) -> list[Problem]:
    """Steps and expectations naming automations the repository does not have."""
    problems: list[Problem] = []

    def unknown(line: int, col: int, ident: str) -> bool:
        if ident in tree.versions:
            return False
        known = ", ".join(sorted(tree.versions)) or "none"
        message = f"no automation {ident!r} in automations/ (known: {known})"
        problems.append(Problem(scenario.path, line, col, "scenario-reference", message))
        return True

    for step in scenario.steps:
        ident = step.values.get("trigger") or step.values.get("automation")
        if ident is None or unknown(step.line, step.col, ident):
            continue
        model = tree.versions[ident].model
        if step.kind == "trigger" and not isinstance(model.trigger, ApiTrigger):
            message = f"{ident} has a `{model.trigger.type}` trigger, not `api`"
            where = (step.line, step.col)
            problems.append(Problem(scenario.path, *where, "scenario-reference", message))
    for line, col, ident in [(e.line, e.col, e.automation) for e in scenario.sends] + [
        (e.line, e.col, e.automation) for e in scenario.no_sends
    ]:
        unknown(line, col, ident)
    return problems


async def run_all(
    root: Path, loaded: Sequence[tuple[Scenario, Tree]], apply: Applier
) -> list[Outcome]:
    """Run each scenario on its own throwaway store and judge it."""
    outcomes = []
    for scenario, tree in loaded:
        timeline = await simulate(root, tree, scenario, apply)
        outcomes.append(Outcome(scenario, timeline, judge(scenario, timeline)))
    return outcomes
