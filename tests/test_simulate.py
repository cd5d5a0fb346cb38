"""`postwright simulate`: scenario files on the real engine (worker, SQLite store, outbox) with
a fake clock, through the command line (docs/simulate.md)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.cli.main import main

ROOT = Path(__file__).resolve().parent.parent

# Monday 2027-01-04 09:00 UTC is the start of every scenario below.
FOLLOW_UP = """\
id: follow-up
status: running
trigger: {type: event, event: signed.up}
wait: 1d
send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00", timezone: UTC}
exit_on:
  - event: purchase
email:
  from: "Shop <news@shop.test>"
  subject: "Follow-up for {{ subscriber.fields.name | default('you') }}"
  text: "Hello"
"""

DRIP = """\
id: drip
status: running
trigger: {type: event, event: course.started}
retrigger: true
repeat: {every: 1d, times: 2}
email:
  from: "Shop <news@shop.test>"
  subject: "Lesson"
  text: "Hello"
"""

ORDERS = """\
id: orders
status: running
trigger: {type: event, event: order.placed}
retrigger: true
email:
  from: "Shop <news@shop.test>"
  subject: "Order {{ event.data.number }}"
  text: "Thanks"
"""

ONCE = """\
id: once
status: running
trigger: {type: event, event: visited}
email:
  from: "Shop <news@shop.test>"
  subject: "Once"
  text: "Hello"
"""

INTRO = """\
id: intro
status: running
trigger: {type: event, event: intro.requested}
email:
  from: "Shop <news@shop.test>"
  subject: "Intro"
  html: '<p><a href="https://shop.test/sale">Sale</a></p>'
"""

OPENED = """\
id: opened-follow-up
status: running
trigger: {type: email, action: opened, automation: intro}
wait: 2h
email:
  from: "Shop <news@shop.test>"
  subject: "You opened the intro"
  text: "Hello"
"""

AUTOMATIONS = {
    "follow-up": FOLLOW_UP,
    "drip": DRIP,
    "orders": ORDERS,
    "once": ONCE,
    "intro": INTRO,
    "opened-follow-up": OPENED,
}


@pytest.fixture(autouse=True)
def _no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run inside GitHub Actions too: never append to the real job summary."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "automations").mkdir(parents=True)
    for ident, text in AUTOMATIONS.items():
        (root / "automations" / f"{ident}.yaml").write_text(text, encoding="utf-8")
    return root


START = "now: 2027-01-04T09:00:00Z\n"


def scenario(repo: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = repo / "scenarios" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def simulate(repo: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["simulate", *argv, "--repo", str(repo)], stdout=out)
    return code, out.getvalue()


def simulate_json(repo: Path, *files: Path) -> tuple[int, dict[str, Any]]:
    code, text = simulate(repo, *map(str, files), "--format", "json")
    return code, json.loads(text)


@dataclass
class Simulator:
    """`postwright simulate` on one repository: scenario files starting at START."""

    repo: Path

    def scenario(self, body: str, name: str = "scenario.yaml") -> Path:
        """scenarios/NAME holding START, then `body`."""
        return scenario(self.repo, START + body, name)

    def check(self, body: str, *argv: str) -> tuple[int, str]:
        """Simulate `body` as scenarios/scenario.yaml: exit code and output."""
        return simulate(self.repo, str(self.scenario(body)), *argv)

    def check_json(self, body: str) -> tuple[int, dict[str, Any]]:
        """Simulate `body` as scenarios/scenario.yaml: exit code and the JSON report."""
        return simulate_json(self.repo, self.scenario(body))


@pytest.fixture
def sim(repo: Path) -> Simulator:
    """A Simulator on the repository of AUTOMATIONS."""
    return Simulator(repo)


def test_wait_and_send_window_met_at_the_exact_instant(sim: Simulator) -> None:
    # Friday 16:00 + 1d = Saturday 16:00, outside the weekday window: Monday 09:00.
    code, body = sim.check_json(
        """\
events:
  - {at: +4d7h, event: signed.up, email: ana@example.com, fields: {name: Ana}}
expect:
  sends:
    - {to: ana@example.com, automation: follow-up, at: +1w}
"""
    )
    assert code == 0, body
    [result] = body["scenarios"]
    assert [s for s in result["sends"] if s["automation"] == "follow-up"] == [
        {
            "at": "2027-01-11T09:00:00Z",
            "offset": "+1w",
            "to": "ana@example.com",
            "automation": "follow-up",
            "subject": "Follow-up for Ana",
        }
    ]
    assert result["expectations"][0]["met"] is True


def test_a_send_one_second_off_misses_an_exact_expectation(sim: Simulator) -> None:
    code, text = sim.check(
        """\
events:
  - {at: +4d7h, event: signed.up, email: ana@example.com}
expect:
  sends:
    - {to: ana@example.com, automation: follow-up, at: +6d23h59m59s}
"""
    )
    assert code == 1
    assert (
        "MISSED scenarios/scenario.yaml:6: follow-up sends to ana@example.com at +6d23h59m59s: "
        "sent at +1w instead" in text
    )


def test_an_exit_event_cancels_with_its_reason(sim: Simulator) -> None:
    events = """\
events:
  - {at: +0s, event: signed.up, email: ben@example.com}
  - {at: +3h, event: purchase, email: ben@example.com}
expect:
  no_sends:
    - {to: ben@example.com, automation: follow-up}
"""
    code, body = sim.check_json(events)
    assert code == 0
    [result] = body["scenarios"]
    assert result["sends"] == []
    assert result["cancellations"] == [
        {
            "at": "2027-01-04T12:00:00Z",
            "offset": "+3h",
            "to": "ben@example.com",
            "automation": "follow-up",
            "reason": "exit_on",
        }
    ]
    code, text = sim.check(events)
    assert "+3h" in text and "cancelled  ben@example.com  follow-up  (exit_on)" in text


def test_a_missed_expectation_exits_1_naming_line_and_what_happened(sim: Simulator) -> None:
    code, text = sim.check(
        """\
events:
  - {at: +0s, event: signed.up, email: ben@example.com}
  - {at: +3h, event: purchase, email: ben@example.com}
expect:
  sends:
    - {to: ben@example.com, automation: follow-up, at: +1d, within: 1h}
"""
    )
    assert code == 1
    assert (
        "MISSED scenarios/scenario.yaml:7: follow-up sends to ben@example.com between +23h "
        "and +1d1h: never sent; cancelled at +3h (exit_on)" in text
    )
    assert text.rstrip().endswith("1 scenario: 0 expectations met, 1 missed")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            START + "events:\n  - {at: +1d, event: signed.up, email: ana@example.com, typo: 1}\n",
            "scenarios/bad.yaml:3:5: error[scenario-schema] events[0]: Additional properties "
            "are not allowed ('typo' was unexpected)",
        ),
        (
            START + "events:\n  - {at: tomorrow, event: signed.up, email: ana@example.com}\n",
            "scenarios/bad.yaml:3:10: error[scenario-schema] events[0].at: 'tomorrow' is not valid",
        ),
        (START + "events: [\n", "scenarios/bad.yaml:3:1: error[yaml-syntax]"),
        (
            START + "expect:\n  sends:\n    - {to: ana@example.com, automation: nope}\n",
            "scenarios/bad.yaml:4:7: error[scenario-reference] no automation 'nope'",
        ),
        (
            START + "events:\n  - {at: +1d, trigger: once, email: ana@example.com}\n",
            "scenarios/bad.yaml:3:5: error[scenario-reference] once has a `event` trigger",
        ),
        (
            "now: 2027-02-30T09:00:00Z\n",
            "scenarios/bad.yaml:1:6: error[scenario-value] '2027-02-30T09:00:00Z' is not a valid",
        ),
    ],
)
def test_a_bad_scenario_file_exits_2_naming_file_and_line(
    repo: Path, text: str, expected: str
) -> None:
    file = scenario(repo, text, "bad.yaml")
    code, out = simulate(repo, str(file))
    assert code == 2
    assert expected in out, out


def test_a_bad_scenario_in_json_lists_its_problems(repo: Path) -> None:
    file = scenario(repo, "events: 3\n", "bad.yaml")
    code, body = simulate_json(repo, file)
    assert code == 2
    assert body["passed"] is False and body["scenarios"] == []
    assert body["problems"][0]["path"] == "scenarios/bad.yaml"
    assert body["problems"][0]["line"] == 1
    assert body["problems"][0]["rule"] == "scenario-schema"


def test_repeat_and_retrigger(sim: Simulator) -> None:
    code, body = sim.check_json(
        """\
until: +5d
events:
  - {at: +0s, event: course.started, email: ana@example.com}
  - {at: +0s, event: visited, email: ana@example.com}
  - {at: +1h, event: visited, email: ana@example.com}
  - {at: +2h, event: order.placed, email: ana@example.com, data: {number: 1}}
  - {at: +3h, event: order.placed, email: ana@example.com, data: {number: 2}}
expect:
  sends:
    - {to: ana@example.com, automation: drip, at: +0s}
    - {to: ana@example.com, automation: drip, at: +1d}
    - {to: ana@example.com, automation: drip, at: +2d}
    - {to: ana@example.com, automation: once, at: +0s}
    - {to: ana@example.com, automation: orders, at: +2h}
    - {to: ana@example.com, automation: orders, at: +3h}
  no_sends:
    - {to: ana@example.com, automation: drip, during: {from: +2d1s, until: +5d}}
    - {to: ana@example.com, automation: once, during: {from: +1s, until: +5d}}
"""
    )
    assert code == 0, json.dumps(body, indent=1)
    subjects = [(s["offset"], s["automation"], s["subject"]) for s in body["scenarios"][0]["sends"]]
    assert subjects == [
        ("+0s", "drip", "Lesson"),
        ("+0s", "once", "Once"),
        ("+2h", "orders", "Order 1"),
        ("+3h", "orders", "Order 2"),
        ("+1d", "drip", "Lesson"),
        ("+2d", "drip", "Lesson"),
    ]


def test_a_retrigger_re_anchors_a_repeat_series(sim: Simulator) -> None:
    code, body = sim.check_json(
        """\
until: +5d
events:
  - {at: +0s, event: course.started, email: ana@example.com}
  - {at: +12h, event: course.started, email: ana@example.com}
expect:
  sends:
    - {to: ana@example.com, automation: drip, at: +0s}
    - {to: ana@example.com, automation: drip, at: +1d12h}
    - {to: ana@example.com, automation: drip, at: +2d12h}
"""
    )
    assert code == 0, json.dumps(body, indent=1)
    [result] = body["scenarios"]
    assert [c["reason"] for c in result["cancellations"]] == ["reanchored"]
    assert result["cancellations"][0]["offset"] == "+12h"


def test_an_email_trigger_chain_opened_then_follow_up(sim: Simulator) -> None:
    code, body = sim.check_json(
        """\
events:
  - {at: +0s, event: intro.requested, email: ana@example.com}
  - {at: +0s, event: intro.requested, email: ben@example.com}
  - {at: +1h, email_event: opened, to: ana@example.com, automation: intro}
expect:
  sends:
    - {to: ana@example.com, automation: intro, at: +0s}
    - {to: ana@example.com, automation: opened-follow-up, at: +3h}
  no_sends:
    - {to: ben@example.com, automation: opened-follow-up}
"""
    )
    assert code == 0, json.dumps(body, indent=1)


def test_an_email_event_before_any_email_is_a_missed_step(sim: Simulator) -> None:
    code, text = sim.check(
        "events:\n  - {at: +1h, email_event: clicked, to: x@example.com, automation: intro}\n"
    )
    assert code == 1
    assert (
        "MISSED scenarios/scenario.yaml:3: step not taken: `clicked` names an email of intro to "
        "x@example.com, but none was sent by then" in text
    )


def test_a_status_change_pauses_and_the_due_send_is_cancelled(sim: Simulator) -> None:
    code, body = sim.check_json(
        """\
events:
  - {at: +0s, event: signed.up, email: ana@example.com}
status_changes:
  - {at: +2h, automation: follow-up, status: paused}
  - {at: +3d, automation: follow-up, status: running}
  - {at: +4d, automation: follow-up, status: stopped}
  - {at: +5d, automation: follow-up, status: running}
"""
    )
    [result] = body["scenarios"]
    assert [(c["offset"], c["reason"]) for c in result["cancellations"]] == [("+1d", "paused")]
    # stopped -> running is refused by the runner, as it would be in a pull request.
    assert code == 1
    [refused] = result["expectations"]
    assert refused["line"] == 8 and refused["met"] is False
    assert "the runner refused follow-up → running" in refused["actual"]


def test_json_output_shape(sim: Simulator) -> None:
    code, body = sim.check_json(
        """\
events:
  - {at: +0s, event: visited, email: ana@example.com}
expect:
  sends:
    - {to: ana@example.com, automation: once}
"""
    )
    assert code == 0
    assert set(body) == {"version", "passed", "problems", "scenarios"}
    assert body["version"] == 1 and body["passed"] is True and body["problems"] == []
    [result] = body["scenarios"]
    assert set(result) == {
        "path",
        "start",
        "end",
        "passed",
        "sends",
        "cancellations",
        "failures",
        "notes",
        "expectations",
    }
    assert result["path"] == "scenarios/scenario.yaml"
    assert result["start"] == "2027-01-04T09:00:00Z"
    assert result["end"] == "2027-02-03T09:00:00Z"  # the last event + 30 days
    assert result["expectations"] == [
        {
            "line": 6,
            "kind": "send",
            "met": True,
            "expected": "once sends to ana@example.com",
            "actual": "sent at +0s",
        }
    ]


def test_two_runs_give_identical_output(sim: Simulator) -> None:
    events = """\
events:
  - {at: +0s, event: intro.requested, email: ana@example.com}
  - {at: +0s, event: course.started, email: ana@example.com}
  - {at: +1h, email_event: opened, to: ana@example.com, automation: intro}
  - {at: +4d7h, event: signed.up, email: ana@example.com}
  - {at: +5d, event: purchase, email: ana@example.com}
"""
    for fmt in ("text", "json", "github"):
        first = sim.check(events, "--format", fmt)
        second = sim.check(events, "--format", fmt)
        assert first == second
        assert "opened-follow-up" in first[1]


def test_github_annotates_missed_expectation_lines_and_writes_the_summary(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    events = """\
events:
  - {at: +0s, event: visited, email: ana@example.com}
expect:
  sends:
    - {to: ana@example.com, automation: once, at: +0s}
    - {to: ana@example.com, automation: once, at: +1d}
"""
    code, text = sim.check(events, "--format", "github")
    assert code == 1
    [annotation] = [line for line in text.splitlines() if line.startswith("::")]
    assert annotation.startswith(
        "::error file=scenarios/scenario.yaml,line=7,title=simulate%3A expectation missed::"
    )
    written = summary.read_text(encoding="utf-8")
    assert "## Postwright simulate" in written and "**missed**" in written


def test_without_arguments_every_scenario_under_scenarios_runs(repo: Path) -> None:
    scenario(
        repo, START + "events:\n  - {at: +0s, event: visited, email: a@example.com}\n", "a.yaml"
    )
    scenario(repo, json.dumps({"now": "2027-01-04T09:00:00Z"}), "b.json")
    code, text = simulate(repo)
    assert code == 0
    assert "scenarios/a.yaml: from" in text and "scenarios/b.json: from" in text
    assert text.rstrip().endswith("2 scenarios: 0 expectations met, 0 missed")


def test_no_scenarios_at_all_cannot_run(repo: Path) -> None:
    code, text = simulate(repo)
    assert code == 2
    assert "no scenario files given" in text


def test_the_shipped_example_scenario_passes() -> None:
    out = io.StringIO()
    code = main(["simulate", "--repo", str(ROOT)], stdout=out)
    assert code == 0, out.getvalue()
    assert "0 missed" in out.getvalue()
    assert "MISSED" not in out.getvalue()


def test_schema_scenario_prints_the_scenario_schema() -> None:
    out = io.StringIO()
    assert main(["schema", "--scenario"], stdout=out) == 0
    schema = json.loads(out.getvalue())
    assert schema["title"] == "Postwright scenario"
    assert "events" in schema["properties"]


def test_date_and_not_opened_triggers_fire_at_their_instants(tmp_path: Path) -> None:
    root = tmp_path / "dates"
    (root / "automations").mkdir(parents=True)
    (root / "automations" / "intro.yaml").write_text(INTRO, encoding="utf-8")
    (root / "automations" / "bday.yaml").write_text(
        "id: bday\nstatus: running\n"
        "trigger: {type: date, field: subscriber.fields.birthday, at: '10:00', "
        "timezone: subscriber}\n"
        'email: {from: "Shop <news@shop.test>", subject: "Happy birthday", text: Hi}\n',
        encoding="utf-8",
    )
    (root / "automations" / "nudge.yaml").write_text(
        "id: nudge\nstatus: running\n"
        "trigger: {type: email, action: not_opened, automation: intro, within: 3d}\n"
        'email: {from: "Shop <news@shop.test>", subject: "Did you see it?", text: Hi}\n',
        encoding="utf-8",
    )
    code, text = Simulator(root).check(
        """\
subscribers:
  - {email: ben@example.com, fields: {birthday: "1990-01-06", timezone: Asia/Tokyo}}
events:
  - {at: +0s, event: intro.requested, email: ana@example.com}
  - {at: +0s, event: intro.requested, email: cy@example.com}
  - {at: +1d, email_event: opened, to: cy@example.com, automation: intro}
expect:
  sends:
    - {to: ben@example.com, automation: bday, at: +1d16h}
    - {to: ana@example.com, automation: nudge, at: +3d}
  no_sends:
    - {to: cy@example.com, automation: nudge}
"""
    )
    assert code == 0, text
    # Tokyo's 10:00 on January 6 is 01:00 UTC.
    assert "+1d16h     2027-01-06T01:00:00Z  sent       ben@example.com  bday" in text


def test_configured_providers_become_outboxes_and_nothing_is_sent(sim: Simulator) -> None:
    # An unreachable base URL and no token in the environment: only an outbox can "send".
    (sim.repo / "postwright.yaml").write_text(
        "timezone: Europe/Berlin\n"
        "providers:\n"
        "  default: {type: postmark, server_token_env: NO_SUCH_TOKEN, "
        "base_url: 'http://127.0.0.1:9'}\n",
        encoding="utf-8",
    )
    code, text = sim.check(
        """\
events:
  - {at: +0s, event: visited, email: ana@example.com}
expect:
  sends:
    - {to: ana@example.com, automation: once, at: +0s}
"""
    )
    assert code == 0, text


def test_an_automation_with_errors_stops_the_run(repo: Path) -> None:
    (repo / "automations" / "broken.yaml").write_text("id: broken\nstatus: yes\n", "utf-8")
    code, text = Simulator(repo).check("")
    assert code == 2
    assert "automations/broken.yaml:2:9: error[yaml-boolean]" in text


def test_a_scenario_needing_too_many_steps_exits_2(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runner.simulation import run

    monkeypatch.setattr(run, "MAX_STEPS", 5)
    (repo / "automations" / "hourly.yaml").write_text(
        "id: hourly\nstatus: running\ntrigger: {type: schedule, cron: '0 * * * *'}\n"
        'email: {from: "Shop <news@shop.test>", subject: Hourly, text: Hi}\n',
        encoding="utf-8",
    )
    file = scenario(repo, START + "subscribers: [{email: ana@example.com}]\n")
    out = io.StringIO()
    code = main(["simulate", str(file), "--repo", str(repo)], stdout=out)
    assert code == 2  # SimulationTooLong, a PostwrightError: one line on stderr
    assert "scenarios/scenario.yaml: more than 5 clock steps" in capsys.readouterr().err


def test_within_is_a_tolerance_either_side_of_at(sim: Simulator) -> None:
    code, text = sim.check(
        """\
events:
  - {at: +0s, event: visited, email: ana@example.com}
expect:
  sends:
    - {to: ana@example.com, automation: once, at: +30m, within: 30m}
"""
    )
    assert code == 0, text
    assert "once sends to ana@example.com between +0s and +1h: sent at +0s" in text
