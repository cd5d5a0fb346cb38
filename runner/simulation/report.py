"""The outputs of `simulate`: plain text lines, stable JSON and GitHub annotations with a job
summary (docs/output-formats.md "simulate")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from runner.checking.report import escape_data, escape_property
from runner.simulation.expectations import Verdict
from runner.simulation.scenario import Problem, Scenario
from runner.simulation.timeline import Timeline

JSON_VERSION = 1


@dataclass(frozen=True)
class Outcome:
    """One scenario run: what happened and how each expectation fared."""

    scenario: Scenario
    timeline: Timeline
    verdicts: list[Verdict]

    @property
    def passed(self) -> bool:
        """Every expectation met and every step taken."""
        return all(verdict.met for verdict in self.verdicts)


def instant(value: datetime) -> str:
    """`2027-01-04T09:00:00Z`."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def summary_line(outcomes: Sequence[Outcome]) -> str:
    """`N scenarios: M expectations met, K missed`."""
    verdicts = [v for o in outcomes for v in o.verdicts]
    missed = sum(1 for v in verdicts if not v.met)
    files = "1 scenario" if len(outcomes) == 1 else f"{len(outcomes)} scenarios"
    met = len(verdicts) - missed
    return f"{files}: {met} expectation{'' if met == 1 else 's'} met, {missed} missed"


# --- text ---------------------------------------------------------------------


def text_lines(outcome: Outcome) -> list[str]:
    """The timeline of one scenario, then its verdicts."""
    scenario, timeline = outcome.scenario, outcome.timeline
    lines = [f"{scenario.path}: from {instant(scenario.start)} to {instant(scenario.end)}"]
    rows: list[tuple[datetime, int, str]] = []
    for sent in timeline.sends:
        text = f"sent       {sent.to}  {sent.automation}  {json.dumps(sent.subject)}"
        rows.append((sent.at, 0, text))
    for gone in timeline.cancellations:
        rows.append((gone.at, 1, f"cancelled  {gone.to}  {gone.automation}  ({gone.reason})"))
    for bad in timeline.failures:
        text = f"failed     {bad.to}  {bad.automation}  ({bad.reason}: {bad.error})"
        rows.append((bad.at, 1, text))
    for note in timeline.notes:
        if not note.failure:
            rows.append((note.at, 2, f"note       line {note.line}: {note.message}"))
    for at, _, text in sorted(rows, key=lambda row: (row[0], row[1], row[2])):
        lines.append(f"  {scenario.offset(at):<10} {instant(at)}  {text}")
    if not rows:
        lines.append("  nothing was sent or cancelled")
    for verdict in outcome.verdicts:
        mark = "ok    " if verdict.met else "MISSED"
        where = f"{scenario.path}:{verdict.line}"
        lines.append(f"  {mark} {where}: {verdict.expected}: {verdict.actual}")
    return lines


def render_text(outcomes: Sequence[Outcome], out: TextIO) -> None:
    """Plain lines, the same on a terminal and in a log."""
    for outcome in outcomes:
        out.write("\n".join(text_lines(outcome)) + "\n")
    out.write(summary_line(outcomes) + "\n")


def render_problems(problems: Sequence[Problem], fmt: str, out: TextIO) -> None:
    """Scenario files that cannot run, in the chosen format."""
    if fmt == "json":
        body = {
            "version": JSON_VERSION,
            "passed": False,
            "problems": [problem_json(p) for p in problems],
            "scenarios": [],
        }
        out.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return
    for problem in problems:
        if fmt == "github":
            out.write(
                _annotation("error", problem.path, problem.line, problem.rule, problem.message)
            )
        else:
            out.write(problem.text() + "\n")
    out.write(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in scenario files\n")


# --- json ---------------------------------------------------------------------


def problem_json(problem: Problem) -> dict[str, Any]:
    """One problem of a scenario file."""
    return {
        "path": problem.path,
        "line": problem.line,
        "col": problem.col,
        "rule": problem.rule,
        "message": problem.message,
    }


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    """One scenario's run as stable JSON (docs/output-formats.md)."""
    scenario, timeline = outcome.scenario, outcome.timeline

    def when(at: datetime) -> dict[str, str]:
        return {"at": instant(at), "offset": scenario.offset(at)}

    return {
        "path": scenario.path,
        "start": instant(scenario.start),
        "end": instant(scenario.end),
        "passed": outcome.passed,
        "sends": [
            {**when(s.at), "to": s.to, "automation": s.automation, "subject": s.subject}
            for s in timeline.sends
        ],
        "cancellations": [
            {**when(c.at), "to": c.to, "automation": c.automation, "reason": c.reason}
            for c in timeline.cancellations
        ],
        "failures": [
            {
                **when(f.at),
                "to": f.to,
                "automation": f.automation,
                "reason": f.reason,
                "error": f.error,
            }
            for f in timeline.failures
        ],
        "notes": [
            {**when(n.at), "line": n.line, "message": n.message, "failure": n.failure}
            for n in timeline.notes
        ],
        "expectations": [
            {
                "line": v.line,
                "kind": v.kind,
                "met": v.met,
                "expected": v.expected,
                "actual": v.actual,
            }
            for v in outcome.verdicts
        ],
    }


def render_json(outcomes: Sequence[Outcome], out: TextIO) -> None:
    """`{"version": 1, "passed": ..., "problems": [], "scenarios": [...]}`."""
    body = {
        "version": JSON_VERSION,
        "passed": all(o.passed for o in outcomes),
        "problems": [],
        "scenarios": [outcome_json(o) for o in outcomes],
    }
    out.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")


# --- github -------------------------------------------------------------------


def _annotation(severity: str, path: str, line: int, title: str, message: str) -> str:
    properties = ",".join(
        f"{key}={escape_property(value)}"
        for key, value in (("file", path), ("line", str(line)), ("title", title))
    )
    return f"::{severity} {properties}::{escape_data(message)}\n"


def render_github(outcomes: Sequence[Outcome], out: TextIO) -> None:
    """An error annotation on each missed expectation's line, then the text lines."""
    for outcome in outcomes:
        for verdict in outcome.verdicts:
            if not verdict.met:
                message = f"{verdict.expected}: {verdict.actual}"
                title = "simulate: expectation missed"
                out.write(_annotation("error", outcome.scenario.path, verdict.line, title, message))
    render_text(outcomes, out)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def summary_markdown(outcomes: Sequence[Outcome]) -> str:
    """The job summary: per scenario its sends, cancellations and verdicts as tables."""
    lines = ["## Postwright simulate", "", summary_line(outcomes) + ".", ""]
    for outcome in outcomes:
        scenario = outcome.scenario
        verdict = "passed" if outcome.passed else "**missed expectations**"
        lines += [f"### `{scenario.path}`: {verdict}", ""]
        lines += ["| when | what | to | automation | detail |", "|---|---|---|---|---|"]
        rows = [(s.at, "sent", s.to, s.automation, s.subject) for s in outcome.timeline.sends]
        rows += [
            (c.at, "cancelled", c.to, c.automation, c.reason)
            for c in outcome.timeline.cancellations
        ]
        rows += [
            (f.at, "failed", f.to, f.automation, f"{f.reason}: {f.error}")
            for f in outcome.timeline.failures
        ]
        for at, what, to, automation, detail in sorted(rows):
            lines.append(
                f"| {scenario.offset(at)} | {what} | {_cell(to)} | `{automation}` "
                f"| {_cell(detail)} |"
            )
        lines += ["", "| line | expectation | result |", "|---|---|---|"]
        for v in outcome.verdicts:
            mark = "met" if v.met else "**missed**"
            lines.append(f"| {v.line} | {_cell(v.expected)} | {mark}: {_cell(v.actual)} |")
        lines.append("")
    return "\n".join(lines) + "\n"
