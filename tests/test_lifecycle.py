"""Tests of the lifecycle rules (runner/core/lifecycle.py): effective status, the
transition table, edits, lifecycle times, metadata, deletes, moves, ids and
email-trigger sources, each judged at one fixed instant."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from runner.core.findings import Severity
from runner.core.lifecycle import Change, check_step, effective_status
from runner.core.loader import load_automation
from runner.core.model import Status
from runner.core.version import Version

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
EARLIER = "2025-06-01T00:00:00Z"
PAST = "2026-01-01T00:00:00Z"
FUTURE = "2027-01-01T00:00:00Z"
LATER = "2027-06-01T00:00:00Z"

# Lines of the file `text()` writes: an absent optional key leaves a comment in
# its place, so every key keeps its line.
ID, NAME, STATUS, START_AT, STOP_AT, TRIGGER, SUBJECT, BODY = 1, 2, 3, 4, 5, 6, 9, 10
STATUS_COL = len("status: ") + 1
ID_COL = len("id: ") + 1


def text(
    ident: str = "a",
    status: str = "draft",
    *,
    name: str | None = None,
    start_at: str | None = None,
    stop_at: str | None = None,
    source: str | None = None,
    subject: str = "Hello",
    html_file: bool = False,
    extra: str = "",
) -> str:
    """An automation file with every key on a fixed line."""
    trigger = f"{{type: email, action: opened, automation: {source}}}" if source else "{type: api}"
    lines = [
        f"id: {ident}",
        f"name: {name}" if name else "# no name",
        f"status: {status}",
        f"start_at: {start_at}" if start_at else "# no start_at",
        f"stop_at: {stop_at}" if stop_at else "# no stop_at",
        f"trigger: {trigger}",
        "email:",
        "  from: news@shop.test",
        f"  subject: {subject}",
        "  html_file: body.html" if html_file else "  html: <p>Hi</p>",
    ]
    return "\n".join(lines) + "\n" + extra


def version_of(yaml: str, path: str, templates: Mapping[str, str] | None = None) -> Version:
    """A valid Version read from YAML text, as the tree checker builds it."""
    loaded = load_automation(path, yaml.encode())
    assert loaded.model is not None, loaded.findings
    return Version.of(loaded, templates or {})


def ver(
    ident: str = "a",
    status: str = "draft",
    *,
    path: str | None = None,
    templates: Mapping[str, str] | None = None,
    **fields: str | bool | None,
) -> Version:
    """A Version of `text(ident, status, **fields)` at automations/<ident>.yaml."""
    yaml = text(ident, status, **fields)  # type: ignore[arg-type]
    return version_of(yaml, path or f"automations/{ident}.yaml", templates)


def step(
    old: Version | None,
    new: Version | None,
    *,
    now: datetime = NOW,
    retired: frozenset[str] = frozenset(),
) -> Change:
    """The one change of a step that touches a single automation."""
    parents = {old.id: old} if old else {}
    children = {new.id: new} if new else {}
    changes = check_step(parents, children, now, retired_ids=retired)
    assert len(changes) == 1
    return changes[0]


def where(change: Change) -> list[tuple[str, int, int]]:
    """Rule id, line and column of every finding of a change."""
    return [(f.rule, f.line, f.col) for f in change.findings]


def by_id(changes: list[Change]) -> dict[str, Change]:
    return {change.id: change for change in changes}


# --- effective status ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "start_at", "stop_at", "expected"),
    [
        ("draft", None, None, Status.DRAFT),
        ("draft", EARLIER, PAST, Status.DRAFT),  # never started: stop_at does not count
        ("scheduled", FUTURE, None, Status.SCHEDULED),
        ("scheduled", FUTURE, LATER, Status.SCHEDULED),
        ("scheduled", PAST, None, Status.RUNNING),
        ("scheduled", PAST, FUTURE, Status.RUNNING),
        ("scheduled", EARLIER, PAST, Status.STOPPED),
        ("scheduled", "2026-06-01T12:00:00Z", None, Status.RUNNING),  # at start_at exactly
        ("running", None, None, Status.RUNNING),
        ("running", None, FUTURE, Status.RUNNING),
        ("running", None, PAST, Status.STOPPED),
        ("running", None, "2026-06-01T21:00:00+09:00", Status.STOPPED),  # == NOW
        ("paused", None, PAST, Status.STOPPED),
        ("paused", None, FUTURE, Status.PAUSED),
        ("stopped", None, None, Status.STOPPED),
    ],
)
def test_effective_status(
    status: str, start_at: str | None, stop_at: str | None, expected: Status
) -> None:
    model = ver(status=status, start_at=start_at, stop_at=stop_at).model
    assert effective_status(model, NOW) is expected


# --- the transition table ---------------------------------------------------------

GRID = """
from/to    draft  scheduled  running  paused  stopped
new        ok     ok         ok       no      no
draft      -      ok         ok       no      no
scheduled  ok     -          ok       no      no
running    no     no         -        ok      ok
paused     no     no         ok       -       ok
stopped    no     no         no       no      -
"""


def _grid_cells() -> list[tuple[str, str, str]]:
    header, *rows = [line.split() for line in GRID.strip().splitlines()]
    return [
        (row[0], to, cell) for row in rows for to, cell in zip(header[1:], row[1:], strict=True)
    ]


@pytest.mark.parametrize(("old", "new", "cell"), _grid_cells())
def test_transition_table(old: str, new: str, cell: str) -> None:
    # Every version carries the same future start_at, so only the status changes.
    parent = None if old == "new" else ver(status=old, start_at=FUTURE)
    change = step(parent, ver(status=new, start_at=FUTURE))
    assert change.new_status is Status(new)
    assert change.transition is (cell != "-")
    if cell == "no":
        assert where(change) == [("transition-not-allowed", STATUS, STATUS_COL)]
        assert change.blocked
    else:
        assert change.findings == ()
        assert not change.blocked


def test_transition_messages() -> None:
    refused = step(ver(status="stopped"), ver(status="running"))
    assert refused.findings[0].message == "status cannot change from stopped to running"
    assert refused.findings[0].automation == "a"
    assert refused.findings[0].path == "automations/a.yaml"
    created = step(None, ver(status="paused"))
    assert created.findings[0].message == "a new automation cannot start as paused"
    assert created.kind == "created"
    assert created.old_status is None


# --- the no-transition rule -------------------------------------------------------


def test_scheduled_file_after_start_at_is_no_transition() -> None:
    old = ver(status="scheduled", start_at=PAST)
    change = step(old, ver(status="scheduled", start_at=PAST))
    assert change.kind == "unchanged"
    assert change.old_status is Status.RUNNING
    assert change.new_status is Status.SCHEDULED
    assert not change.transition
    assert change.findings == ()


def test_writing_running_after_start_at_is_no_transition() -> None:
    change = step(ver(status="scheduled", start_at=PAST), ver(status="running", start_at=PAST))
    assert not change.transition
    assert change.kind == "modified"  # the written status changed
    assert change.findings == ()


def test_started_scheduled_file_is_not_editable() -> None:
    old = ver(status="scheduled", start_at=PAST)
    for status in ("scheduled", "running"):
        change = step(old, ver(status=status, start_at=PAST, subject="Changed"))
        assert not change.transition
        assert where(change) == [("edit-not-allowed", SUBJECT, 3)]
        assert change.findings[0].message == (
            "`email.subject` changed while the automation is running"
        )


def test_writing_stopped_after_stop_at_is_no_transition() -> None:
    change = step(ver(status="running", stop_at=PAST), ver(status="stopped", stop_at=PAST))
    assert change.old_status is Status.STOPPED
    assert not change.transition
    assert change.findings == ()


def test_stopped_by_stop_at_cannot_be_paused() -> None:
    change = step(ver(status="running", stop_at=PAST), ver(status="paused", stop_at=PAST))
    assert change.transition
    assert where(change) == [("transition-not-allowed", STATUS, STATUS_COL)]
    assert change.findings[0].message == "status cannot change from stopped to paused"


# --- the edit rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        ("draft", "draft", True),
        ("draft", "scheduled", True),
        ("draft", "running", True),
        ("scheduled", "draft", True),
        ("scheduled", "scheduled", False),
        ("scheduled", "running", False),
        ("running", "running", False),
        ("running", "paused", True),
        ("running", "stopped", False),
        ("paused", "paused", True),
        ("paused", "running", True),
        ("paused", "stopped", True),
        ("stopped", "stopped", False),
    ],
)
def test_edit_rule(old: str, new: str, allowed: bool) -> None:
    parent = ver(status=old, start_at=FUTURE)
    change = step(parent, ver(status=new, start_at=FUTURE, subject="Changed"))
    assert change.edited == ("email.subject",)
    assert change.kind == "modified"
    assert where(change) == ([] if allowed else [("edit-not-allowed", SUBJECT, 3)])


def test_stopped_to_paused_with_edit_breaks_both_rules() -> None:
    change = step(ver(status="stopped"), ver(status="paused", subject="Changed"))
    assert where(change) == [
        ("transition-not-allowed", STATUS, STATUS_COL),
        ("edit-not-allowed", SUBJECT, 3),
    ]
    assert change.findings[1].message == (
        "`email.subject` changed while the automation goes from stopped to paused"
    )


def test_edit_help_says_how_to_make_it_legal() -> None:
    running = step(ver(status="running"), ver(status="running", subject="Changed"))
    assert running.findings[0].help == "set `status: paused` in an earlier commit, then edit"
    scheduled = step(
        ver(status="scheduled", start_at=FUTURE),
        ver(status="scheduled", start_at=FUTURE, subject="Changed"),
    )
    assert scheduled.findings[0].help == "set `status: draft` in an earlier commit, then edit"
    assert scheduled.findings[0].message == (
        "`email.subject` changed while the automation is scheduled"
    )


def test_several_edits_are_reported_at_the_first_in_the_file() -> None:
    old = ver(status="running")
    new = ver(status="running", source="src", subject="Changed")
    change = step(old, new)
    assert change.edited == (
        "email.subject",
        "trigger.action",
        "trigger.automation",
        "trigger.type",
    )
    # The first edited key written in the child file is `trigger.type`.
    assert where(change) == [("edit-not-allowed", TRIGGER, 11)]
    assert change.findings[0].message == (
        "`email.subject`, `trigger.action`, `trigger.automation` and 1 more field "
        "changed while the automation is running"
    )


def test_two_edits_are_named_together() -> None:
    change = step(ver(status="running"), ver(status="running", subject="New", extra="wait: 1h\n"))
    assert change.edited == ("email.subject", "wait")
    assert where(change) == [("edit-not-allowed", SUBJECT, 3)]
    assert change.findings[0].message.startswith("`email.subject` and `wait` changed")


def test_template_file_change_is_an_edit_of_a_running_automation() -> None:
    old = ver(status="running", html_file=True, templates={"html_file": "<p>A</p>"})
    new = ver(status="running", html_file=True, templates={"html_file": "<p>B</p>"})
    change = step(old, new)
    assert change.edited == ("email.html",)
    assert where(change) == [("edit-not-allowed", BODY, 3)]
    assert change.findings[0].message == "`email.html` changed while the automation is running"


def test_template_file_change_is_allowed_while_paused() -> None:
    old = ver(status="paused", html_file=True, templates={"html_file": "<p>A</p>"})
    new = ver(status="paused", html_file=True, templates={"html_file": "<p>B</p>"})
    change = step(old, new)
    assert change.kind == "modified"
    assert change.findings == ()


def test_body_moved_into_a_template_file_is_not_an_edit() -> None:
    old = ver(status="running")
    new = ver(status="running", html_file=True, templates={"html_file": "<p>Hi</p>"})
    change = step(old, new)
    assert change.edited == ()
    assert change.kind == "unchanged"


MINIMAL = """\
id: a
status: running
start_at: 2026-03-01T09:00:00+09:00
trigger:
  type: event
  event: purchase
wait: 1d
send_window:
  start: "9:00"
  end: "18:00"
email:
  from: news@shop.test
  subject: Hello
  html: <p>Hi</p>
"""

WRITTEN_OUT = """\
# The same automation with every default written out and another layout.
id: "a"
status: 'running'
start_at: 2026-03-01T00:00:00Z
trigger: {type: event, event: purchase}
email: {from: news@shop.test, subject: "Hello", html: "<p>Hi</p>", tags: []}
wait: 24h
retrigger: false
provider: default
exit_on: []
labels: {}
send_window:
  days: [sun, sat, fri, thu, wed, tue, mon, mon]
  start: "09:00"
  end: "18:00"
"""


def test_written_out_defaults_and_reformatting_are_not_edits() -> None:
    old = version_of(MINIMAL, "automations/a.yaml")
    new = version_of(WRITTEN_OUT, "automations/a.yaml")
    change = step(old, new)
    assert (change.kind, change.edited, change.lifecycle, change.metadata) == (
        "unchanged",
        (),
        (),
        (),
    )
    assert change.findings == ()


@pytest.mark.parametrize(
    ("status", "start_at"),
    [("running", None), ("stopped", None), ("scheduled", PAST), ("scheduled", FUTURE)],
)
def test_metadata_changes_are_always_allowed(status: str, start_at: str | None) -> None:
    old = ver(status=status, start_at=start_at)
    extra = "description: Sent after a purchase\nlabels: {team: growth}\n"
    new = ver(status=status, start_at=start_at, name="Thanks", extra=extra)
    change = step(old, new)
    assert change.kind == "modified"
    assert change.metadata == ("name", "description", "labels")
    assert change.edited == ()
    assert change.findings == ()


# --- lifecycle times ---------------------------------------------------------------


def test_start_at_added_when_scheduling() -> None:
    change = step(ver(status="draft"), ver(status="scheduled", start_at=FUTURE))
    assert change.lifecycle == ("start_at",)
    assert change.findings == ()


def test_start_at_moved_while_scheduled_is_a_reschedule() -> None:
    old = ver(status="scheduled", start_at=FUTURE)
    change = step(old, ver(status="scheduled", start_at=LATER))
    assert change.lifecycle == ("start_at",)
    assert change.findings == ()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            ver(status="draft"),
            ver(status="draft", start_at=FUTURE),
            "`start_at` added while the status is draft",
        ),
        (
            ver(status="running", start_at=PAST),
            ver(status="running", start_at=EARLIER),
            "`start_at` changed while the status is running",
        ),
        (
            ver(status="paused", start_at=FUTURE),
            ver(status="paused", start_at=LATER),
            "`start_at` changed while the status is paused",
        ),
        (
            ver(status="scheduled", start_at=PAST),
            ver(status="scheduled", start_at=FUTURE),
            "`start_at` changed after the automation started (it is running)",
        ),
    ],
)
def test_start_at_changed_outside_scheduled(old: Version, new: Version, message: str) -> None:
    change = step(old, new)
    assert where(change) == [("start-at-not-scheduled", START_AT, 1)]
    assert change.findings[0].message == message


def test_start_at_may_stay_or_be_removed_in_any_status() -> None:
    for status in ("draft", "running", "paused", "stopped"):
        stays = step(ver(status=status, start_at=PAST), ver(status=status, start_at=PAST))
        assert stays.findings == ()
        removed = step(ver(status=status, start_at=PAST), ver(status=status))
        assert removed.lifecycle == ("start_at",)
        assert removed.findings == ()


@pytest.mark.parametrize(
    ("old_stop", "new_stop"), [(None, FUTURE), (FUTURE, LATER), (FUTURE, None), (LATER, FUTURE)]
)
def test_stop_at_added_moved_or_removed_before_stopping(
    old_stop: str | None, new_stop: str | None
) -> None:
    change = step(ver(status="running", stop_at=old_stop), ver(status="running", stop_at=new_stop))
    assert change.lifecycle == ("stop_at",)
    assert change.findings == ()


@pytest.mark.parametrize("new_stop", [PAST, "2026-06-01T12:00:00Z"])
def test_new_stop_at_must_be_later_than_now(new_stop: str) -> None:
    change = step(ver(status="running", stop_at=FUTURE), ver(status="running", stop_at=new_stop))
    assert where(change) == [("stop-at-in-past", STOP_AT, 1)]
    finding = change.findings[0]
    assert finding.help == "set `status: stopped` to stop now"
    assert finding.message.endswith("is not later than now (2026-06-01T12:00:00Z)")


def test_new_file_with_stop_at_in_the_past() -> None:
    change = step(None, ver(status="draft", stop_at=PAST))
    assert where(change) == [("stop-at-in-past", STOP_AT, 1)]
    assert change.findings[0].message == (
        "`stop_at` 2026-01-01T00:00:00Z is not later than now (2026-06-01T12:00:00Z)"
    )


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        (ver(status="running", stop_at=PAST), ver(status="running", stop_at=FUTURE), STOP_AT),
        (ver(status="paused", stop_at=PAST), ver(status="paused"), STATUS),
        (ver(status="stopped"), ver(status="stopped", stop_at=FUTURE), STOP_AT),
    ],
)
def test_stop_at_cannot_change_after_stopping(old: Version, new: Version, line: int) -> None:
    change = step(old, new)
    assert not change.transition
    assert where(change) == [("stop-at-after-stop", line, 1)]


def test_unchanged_stop_at_in_the_past_is_no_finding() -> None:
    change = step(ver(status="draft", stop_at=PAST), ver(status="draft", stop_at=PAST, name="N"))
    assert change.findings == ()


# --- deletes, moves, ids -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "refused"),
    [
        (ver(status="running"), True),
        (ver(status="scheduled", start_at=PAST), True),
        (ver(status="scheduled", start_at=FUTURE), False),
        (ver(status="paused"), False),
        (ver(status="running", stop_at=PAST), False),
        (ver(status="stopped"), False),
        (ver(status="draft"), False),
    ],
)
def test_delete(old: Version, refused: bool) -> None:
    change = step(old, None)
    assert (change.kind, change.old_path, change.new_path) == (
        "deleted",
        "automations/a.yaml",
        None,
    )
    assert change.new_status is None
    assert not change.transition
    assert where(change) == ([("delete-running", 1, 1)] if refused else [])
    if refused:
        assert change.findings[0].help == "pause or stop it first"
        assert change.findings[0].path == "automations/a.yaml"


def test_move_to_another_folder() -> None:
    old = ver(status="running", html_file=True, templates={"html_file": "<p>A</p>"})
    new = ver(
        status="running",
        html_file=True,
        templates={"html_file": "<p>A</p>"},
        path="automations/growth/a.yaml",
    )
    change = step(old, new)
    assert change.kind == "moved"
    assert (change.old_path, change.new_path) == ("automations/a.yaml", "automations/growth/a.yaml")
    assert change.findings == ()


def test_move_with_an_edit_is_a_modification() -> None:
    old = ver(status="paused")
    new = ver(status="paused", subject="Changed", path="automations/growth/a.yaml")
    change = step(old, new)
    assert change.kind == "modified"
    assert change.new_path == "automations/growth/a.yaml"
    assert change.findings == ()


def test_unchanged() -> None:
    change = step(ver(status="running"), ver(status="running"))
    assert (change.kind, change.transition, change.findings) == ("unchanged", False, ())
    assert change.old_status is change.new_status is Status.RUNNING


def test_reused_id() -> None:
    change = step(None, ver("a", "draft"), retired=frozenset({"a", "z"}))
    assert where(change) == [("id-reused", ID, ID_COL)]
    assert step(None, ver("b", "draft"), retired=frozenset({"a"})).findings == ()


def test_rename_warns_that_dedupe_resets() -> None:
    changes = by_id(check_step({"old": ver("old", "paused")}, {"new": ver("new", "draft")}, NOW))
    assert changes["old"].kind == "deleted"
    assert changes["old"].findings == ()
    assert changes["new"].kind == "created"
    assert where(changes["new"]) == [("rename-resets-dedupe", ID, ID_COL)]
    warning = changes["new"].findings[0]
    assert warning.severity is Severity.WARNING
    assert "replaces the deleted `old`" in warning.message
    assert not changes["new"].blocked


def test_renaming_a_running_automation_is_a_running_delete() -> None:
    parents, children = {"old": ver("old", "running")}, {"new": ver("new", "running")}
    changes = by_id(check_step(parents, children, NOW))
    assert where(changes["old"]) == [("delete-running", 1, 1)]
    assert where(changes["new"]) == [("rename-resets-dedupe", ID, ID_COL)]


def test_rename_at_the_same_path_with_other_content() -> None:
    new = ver("new", "draft", subject="Other", path="automations/old.yaml")
    changes = by_id(check_step({"old": ver("old", "draft")}, {"new": new}, NOW))
    assert where(changes["new"]) == [("rename-resets-dedupe", ID, ID_COL)]


def test_delete_and_unrelated_create_is_no_rename() -> None:
    changes = by_id(
        check_step({"old": ver("old", "draft")}, {"new": ver("new", "draft", subject="X")}, NOW)
    )
    assert changes["new"].findings == ()


# --- email-trigger sources ---------------------------------------------------------------


SOURCE_COL = len("trigger: {type: email, action: opened, automation: ") + 1


@pytest.mark.parametrize(
    ("source", "state"),
    [
        (ver("src", "stopped"), "is stopped"),
        (ver("src", "running", stop_at=PAST), "is stopped"),
        (ver("src", "scheduled", start_at=EARLIER, stop_at=PAST), "is stopped"),
    ],
)
def test_new_trigger_on_a_stopped_source(source: Version, state: str) -> None:
    changes = check_step({"src": source}, {"src": source, "b": ver("b", source="src")}, NOW)
    change = by_id(changes)["b"]
    assert where(change) == [("source-unavailable", TRIGGER, SOURCE_COL)]
    assert change.findings[0].message == f"the email trigger names `src`, which {state}"


def test_new_trigger_on_a_source_deleted_in_the_same_step() -> None:
    changes = check_step({"src": ver("src", "paused")}, {"b": ver("b", source="src")}, NOW)
    change = by_id(changes)["b"]
    assert where(change) == [("source-unavailable", TRIGGER, SOURCE_COL)]
    assert change.findings[0].message.endswith("which is deleted in this change")


def test_new_trigger_on_a_source_deleted_earlier() -> None:
    change = step(None, ver("b", source="src"), retired=frozenset({"src"}))
    assert where(change) == [("source-unavailable", TRIGGER, SOURCE_COL)]
    assert change.findings[0].message.endswith("which was deleted earlier")


def test_trigger_changed_to_a_stopped_source() -> None:
    parents = {"b": ver("b", "paused", source="live"), "dead": ver("dead", "stopped")}
    children = {**parents, "b": ver("b", "paused", source="dead")}
    change = by_id(check_step(parents, children, NOW))["b"]
    assert change.edited == ("trigger.automation",)
    assert where(change) == [("source-unavailable", TRIGGER, SOURCE_COL)]


def test_existing_reference_to_a_source_that_stops_is_not_this_rule() -> None:
    parents = {"b": ver("b", "running", source="src"), "src": ver("src", "running")}
    children = {**parents, "src": ver("src", "stopped")}
    changes = by_id(check_step(parents, children, NOW))
    assert changes["b"].kind == "unchanged"
    assert changes["b"].findings == ()
    assert changes["src"].findings == ()


def test_trigger_on_a_running_source_is_fine() -> None:
    source = ver("src", "running")
    changes = check_step({"src": source}, {"src": source, "b": ver("b", source="src")}, NOW)
    assert by_id(changes)["b"].findings == ()


# --- a whole step -------------------------------------------------------------------------


def test_one_change_per_id_sorted() -> None:
    parents = {"c": ver("c", "running"), "a": ver("a", "paused"), "d": ver("d", "draft")}
    children = {"b": ver("b", "draft", subject="New"), "a": ver("a", "running"), "d": parents["d"]}
    changes = check_step(parents, children, NOW)
    assert [(c.id, c.kind) for c in changes] == [
        ("a", "modified"),
        ("b", "created"),
        ("c", "deleted"),
        ("d", "unchanged"),
    ]
    assert [c.blocked for c in changes] == [False, False, True, False]
    assert changes[0].transition
    assert changes[0].old_status is Status.PAUSED
