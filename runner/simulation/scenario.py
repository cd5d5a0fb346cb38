"""Scenario files: read (YAML or JSON, with positions), checked against their JSON Schema,
and turned into typed, time-ordered steps (docs/simulate.md)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema

from runner.core.durations import format_duration, parse_duration
from runner.core.yamlread import Document, read_yaml
from runner.errors import PostwrightError
from runner.repo.files import Refused, read_repo_file
from runner.simulation.schema import scenario_schema

DEFAULT_START = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)  # a Monday morning
DEFAULT_TAIL = timedelta(days=30)  # how long the simulation runs after its last event
_VALIDATOR = jsonschema.Draft202012Validator(scenario_schema())


@dataclass(frozen=True)
class Problem:
    """Why a scenario cannot run, at `path:line:col`."""

    path: str
    line: int
    col: int
    rule: str
    message: str

    def text(self) -> str:
        """`path:line:col: error[rule] message`, as validate prints findings."""
        return f"{self.path}:{self.line}:{self.col}: error[{self.rule}] {self.message}"


class ScenarioError(PostwrightError):
    """A scenario file that cannot run; `problems` say where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.text() for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Person:
    """A subscriber known before the simulation starts."""

    email: str
    fields: dict[str, Any]
    groups: list[str] | None


@dataclass(frozen=True)
class Step:
    """One timed entry of the scenario: `kind` is event, trigger, email_event or status."""

    at: datetime
    line: int
    kind: str
    values: dict[str, Any]
    index: int  # order in the file, for a stable order at one instant
    col: int = 1


@dataclass(frozen=True)
class ExpectSend:
    """An email `automation` sends `to`, in [at - within, at + within] (any time without `at`)."""

    line: int
    to: str
    automation: str
    at: datetime | None
    within: timedelta
    col: int = 1


@dataclass(frozen=True)
class ExpectNoSend:
    """No email of `automation` to `to` (None: anyone) in [start, until)."""

    line: int
    to: str | None
    automation: str
    start: datetime
    until: datetime | None  # None: the end of the simulation
    col: int = 1


@dataclass
class Scenario:
    """A checked scenario file."""

    path: str
    start: datetime
    end: datetime
    subscribers: list[Person] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    sends: list[ExpectSend] = field(default_factory=list)
    no_sends: list[ExpectNoSend] = field(default_factory=list)

    def offset(self, instant: datetime) -> str:
        """`+2d3h`: the instant as time after the start."""
        seconds = int((instant - self.start).total_seconds())
        return ("+" if seconds >= 0 else "") + format_duration(seconds)


def load_scenario(file: Path, shown: str) -> Scenario:
    """Read and check the scenario at `file` (named `shown` in problems); ScenarioError."""
    content = read_repo_file(file.parent, file.name)
    if content is None:
        raise ScenarioError([Problem(shown, 1, 1, "scenario-missing", "no such file")])
    if isinstance(content, Refused):
        raise ScenarioError([Problem(shown, 1, 1, content.rule, content.message)])
    document, found = read_yaml(shown, content)
    if document is None or found:
        problems = [Problem(f.path, f.line, f.col, f.rule, f.message) for f in found]
        raise ScenarioError(problems or [Problem(shown, 1, 1, "yaml-syntax", "unreadable")])
    problems = schema_problems(shown, document)
    if problems:
        raise ScenarioError(problems)
    return _Builder(shown, document).build()


def schema_problems(shown: str, document: Document) -> list[Problem]:
    """Every place the document breaks the scenario schema, in file order."""
    problems = []
    for error in _VALIDATOR.iter_errors(document.data):
        where = tuple(error.absolute_path)
        line, col = document.position(where)
        spot = _dotted(where)
        message = f"{spot}: {error.message}" if spot else error.message
        problems.append(Problem(shown, line, col, "scenario-schema", message))
    return sorted(set(problems), key=lambda p: (p.line, p.col, p.message))


def _dotted(where: tuple[str | int, ...]) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_KINDS = ("event", "trigger", "email_event")


class _Builder:
    """The typed scenario from a schema-valid document; times resolved against the start."""

    def __init__(self, shown: str, document: Document) -> None:
        self.shown = shown
        self.document = document
        self.data: dict[str, Any] = document.data
        self.problems: list[Problem] = []
        self.start = DEFAULT_START
        if "now" in self.data:
            self.start = self._absolute(self.data["now"], ("now",)) or DEFAULT_START

    def build(self) -> Scenario:
        """The scenario, or ScenarioError with every problem found."""
        scenario = Scenario(self.shown, self.start, self.start)
        for person in self.data.get("subscribers", []):
            groups = person.get("groups")
            scenario.subscribers.append(
                Person(person["email"].strip().lower(), dict(person.get("fields") or {}), groups)
            )
        for index, item in enumerate(self.data.get("events", [])):
            kind = next(k for k in _KINDS if k in item)
            where = ("events", index)
            at = self._when(item["at"], (*where, "at"))
            scenario.steps.append(
                Step(at, self._line(where), kind, dict(item), index, self._col(where))
            )
        for index, item in enumerate(self.data.get("status_changes", [])):
            where = ("status_changes", index)
            at = self._when(item["at"], (*where, "at"))
            # Status changes come first at an instant: the engine sees them before the events.
            order = index - 10**6
            step = Step(at, self._line(where), "status", dict(item), order, self._col(where))
            scenario.steps.append(step)
        scenario.steps.sort(key=lambda s: (s.at, s.index))
        expect = self.data.get("expect", {})
        for index, item in enumerate(expect.get("sends", [])):
            spot: tuple[str | int, ...] = ("expect", "sends", index)
            due = self._when(item["at"], (*spot, "at")) if "at" in item else None
            within = timedelta(seconds=parse_duration(item.get("within", "0s")) or 0)
            scenario.sends.append(
                ExpectSend(
                    self._line(spot),
                    _address(item["to"]),
                    item["automation"],
                    due,
                    within,
                    self._col(spot),
                )
            )
        for index, item in enumerate(expect.get("no_sends", [])):
            scenario.no_sends.append(self._no_send(item, ("expect", "no_sends", index)))
        last = scenario.steps[-1].at if scenario.steps else self.start
        scenario.end = last + DEFAULT_TAIL
        if "until" in self.data:
            scenario.end = self._when(self.data["until"], ("until",))
            for step in scenario.steps:
                if step.at > scenario.end:
                    self._problem(
                        ("until",), f"the scenario ends before a step on line {step.line}"
                    )
        for step in scenario.steps:
            if step.at < self.start:
                self._problem_at(step.line, "a step cannot come before the start (`now`)")
        if self.problems:
            raise ScenarioError(sorted(self.problems, key=lambda p: (p.line, p.col)))
        return scenario

    def _no_send(self, item: dict[str, Any], where: tuple[str | int, ...]) -> ExpectNoSend:
        start, until = self.start, None
        if "before" in item:
            until = self._when(item["before"], (*where, "before"))
        elif "during" in item:
            start = self._when(item["during"]["from"], (*where, "during", "from"))
            until = self._when(item["during"]["until"], (*where, "during", "until"))
            if until <= start:
                self._problem((*where, "during"), "`until` must come after `from`")
        to = _address(item["to"]) if "to" in item else None
        line, col = self.document.position(where)
        return ExpectNoSend(line, to, item["automation"], start, until, col)

    def _when(self, text: str, where: tuple[str | int, ...]) -> datetime:
        if text.startswith("+"):
            return self.start + timedelta(seconds=parse_duration(text[1:]) or 0)
        return self._absolute(text, where) or self.start

    def _absolute(self, text: str, where: tuple[str | int, ...]) -> datetime | None:
        try:
            return datetime.fromisoformat(text.replace("z", "Z")).astimezone(UTC)
        except ValueError as error:
            self._problem(where, f"{text!r} is not a valid instant: {error}")
            return None

    def _line(self, where: tuple[str | int, ...]) -> int:
        return self.document.position(where)[0]

    def _col(self, where: tuple[str | int, ...]) -> int:
        return self.document.position(where)[1]

    def _problem(self, where: tuple[str | int, ...], message: str) -> None:
        line, col = self.document.position(where)
        self.problems.append(Problem(self.shown, line, col, "scenario-value", message))

    def _problem_at(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.shown, line, 1, "scenario-value", message))


def _address(text: str) -> str:
    return text.strip().lower()


def shown_path(file: Path, root: Path) -> str:
    """The path problems and annotations name: relative to the repository when inside it."""
    absolute = file if file.is_absolute() else Path.cwd() / file
    try:
        return absolute.resolve().relative_to(root).as_posix()
    except ValueError:
        return posixpath.normpath(file.as_posix())
