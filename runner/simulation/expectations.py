"""Judging a scenario's expectations against what the engine did (docs/simulate.md
"Expectations")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runner.simulation.scenario import ExpectNoSend, ExpectSend, Scenario
from runner.simulation.timeline import Sent, Timeline


@dataclass(frozen=True)
class Verdict:
    """One expectation (or a step the engine could not take), met or missed."""

    line: int
    kind: str  # send | no_send | step
    met: bool
    expected: str
    actual: str


def judge(scenario: Scenario, timeline: Timeline) -> list[Verdict]:
    """Every expectation's verdict, and a missed one for each failed step, by line."""
    verdicts: list[Verdict] = []
    used: set[int] = set()
    ordered = sorted(scenario.sends, key=lambda e: (e.at or scenario.start, e.line))
    for expected in ordered:
        verdicts.append(_send(scenario, timeline, expected, used))
    for forbidden in scenario.no_sends:
        verdicts.append(_no_send(scenario, timeline, forbidden))
    for note in timeline.notes:
        if note.failure:
            verdicts.append(Verdict(note.line, "step", False, "step not taken", note.message))
    return sorted(verdicts, key=lambda v: (v.line, v.kind))


def _send(scenario: Scenario, timeline: Timeline, expected: ExpectSend, used: set[int]) -> Verdict:
    when = _window(scenario, expected)
    wanted = f"{expected.automation} sends to {expected.to}{when}"
    mine = [
        (index, sent)
        for index, sent in enumerate(timeline.sends)
        if sent.to == expected.to and sent.automation == expected.automation
    ]
    for index, sent in mine:
        if index not in used and _inside(expected, sent.at):
            used.add(index)
            return Verdict(expected.line, "send", True, wanted, f"sent at {_when(scenario, sent)}")
    if mine:
        times = ", ".join(_when(scenario, sent) for _, sent in mine)
        actual = f"sent at {times} instead"
    else:
        actual = "never sent"
    cancelled = [
        f"cancelled at {scenario.offset(c.at)} ({c.reason})"
        for c in timeline.cancellations
        if c.to == expected.to and c.automation == expected.automation
    ]
    cancelled += [
        f"failed at {scenario.offset(f.at)} ({f.reason}: {f.error})"
        for f in timeline.failures
        if f.to == expected.to and f.automation == expected.automation
    ]
    if cancelled:
        actual += "; " + ", ".join(cancelled)
    return Verdict(expected.line, "send", False, wanted, actual)


def _inside(expected: ExpectSend, at: datetime) -> bool:
    return expected.at is None or abs(at - expected.at) <= expected.within


def _window(scenario: Scenario, expected: ExpectSend) -> str:
    if expected.at is None:
        return ""
    if not expected.within:
        return f" at {scenario.offset(expected.at)}"
    since = scenario.offset(expected.at - expected.within)
    until = scenario.offset(expected.at + expected.within)
    return f" between {since} and {until}"


def _no_send(scenario: Scenario, timeline: Timeline, forbidden: ExpectNoSend) -> Verdict:
    who = forbidden.to or "anyone"
    if forbidden.until is None:
        span = ""
    elif forbidden.start == scenario.start:
        span = f" before {scenario.offset(forbidden.until)}"
    else:
        span = f" from {scenario.offset(forbidden.start)} until {scenario.offset(forbidden.until)}"
    wanted = f"{forbidden.automation} sends nothing to {who}{span}"
    found = [
        sent
        for sent in timeline.sends
        if sent.automation == forbidden.automation
        and (forbidden.to is None or sent.to == forbidden.to)
        and forbidden.start <= sent.at
        and (forbidden.until is None or sent.at < forbidden.until)
    ]
    if not found:
        return Verdict(forbidden.line, "no_send", True, wanted, "nothing sent")
    actual = ", ".join(f"sent to {s.to} at {_when(scenario, s)}" for s in found)
    return Verdict(forbidden.line, "no_send", False, wanted, actual)


def _when(scenario: Scenario, sent: Sent) -> str:
    return scenario.offset(sent.at)
