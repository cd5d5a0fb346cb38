"""Scenario files read and checked without running them: schema, positions, times, order
(docs/simulate.md "A scenario file")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from runner.core.yamlread import read_yaml
from runner.simulation.scenario import DEFAULT_START, ScenarioError, load_scenario
from runner.simulation.schema import scenario_schema, scenario_schema_text

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return load_scenario(path, "scenarios/s.yaml")


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load(tmp_path, text)
    return [p.text() for p in caught.value.problems]


def test_the_checked_in_schema_is_the_generated_one() -> None:
    path = ROOT / "schema" / "scenario.schema.json"
    assert path.read_text(encoding="utf-8") == scenario_schema_text(), "run `make schema`"
    jsonschema.Draft202012Validator.check_schema(scenario_schema())


def test_the_shipped_scenarios_follow_the_schema() -> None:
    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    assert files
    for file in files:
        # Read as YAML 1.2 (as Postwright and editors read it): instants stay strings.
        document, found = read_yaml(file.name, file.read_bytes())
        assert document is not None and found == []
        jsonschema.validate(document.data, scenario_schema())
        assert "$schema=../schema/scenario.schema.json" in file.read_text(encoding="utf-8")


def test_relative_and_absolute_times_and_the_order_at_one_instant(tmp_path: Path) -> None:
    scenario = load(
        tmp_path,
        """\
now: 2027-03-01T10:00:00+01:00
events:
  - {at: +1d2h, event: b.later, email: A@Example.com}
  - {at: 2027-03-01T09:00:00Z, event: a.first, email: a@example.com}
  - {at: +1d2h, event: c.same_instant, email: a@example.com}
status_changes:
  - {at: +1d2h, automation: x, status: paused}
""",
    )
    start = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    assert scenario.start == start  # type: ignore[attr-defined]
    steps = scenario.steps  # type: ignore[attr-defined]
    assert [(s.at - start, s.kind, s.values.get("event")) for s in steps] == [
        (timedelta(0), "event", "a.first"),
        (timedelta(days=1, hours=2), "status", None),  # status changes first at an instant
        (timedelta(days=1, hours=2), "event", "b.later"),
        (timedelta(days=1, hours=2), "event", "c.same_instant"),
    ]
    assert scenario.end == start + timedelta(days=31, hours=2)  # type: ignore[attr-defined]


def test_the_default_start(tmp_path: Path) -> None:
    assert load(tmp_path, "{}\n").start == DEFAULT_START  # type: ignore[attr-defined]


def test_every_schema_problem_in_one_run_with_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
events:
  - {at: +1d, event: Bad Name, email: a@example.com}
  - {at: +1d, email_event: opened, to: a@example.com}
  - {at: +1d, event: email.opened, email: a@example.com}
  - {at: +1d, event: group.joined, email: a@example.com}
expect:
  sends:
    - {to: a@example.com, automation: x, within: 1h}
""",
    )
    assert [line.split(": error")[0] for line in found] == [
        "scenarios/s.yaml:2:22",
        "scenarios/s.yaml:3:5",
        "scenarios/s.yaml:4:22",
        "scenarios/s.yaml:5:5",
        "scenarios/s.yaml:8:7",
    ]
    assert "'automation' is a required property" in found[1]
    assert "'data' is a required property" in found[3]
    assert "'at' is a dependency of 'within'" in found[4]


def test_steps_outside_the_scenario_are_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
now: 2027-01-04T09:00:00Z
until: +1d
events:
  - {at: 2027-01-01T00:00:00Z, event: early, email: a@example.com}
  - {at: +2d, event: late, email: a@example.com}
""",
    )
    assert found == [
        "scenarios/s.yaml:2:8: error[scenario-value] the scenario ends before a step on line 5",
        "scenarios/s.yaml:4:1: error[scenario-value] a step cannot come before the start (`now`)",
    ]


def test_yaml_traps_are_refused_with_their_rule(tmp_path: Path) -> None:
    found = problems(tmp_path, "events: []\nevents: []\n")
    assert found[0].startswith("scenarios/s.yaml:2:1: error[yaml-duplicate-key]")
