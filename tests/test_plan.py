"""The plan over hand-built changes: entries, blocking, and the three formats."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest

from runner.checking.plan import Plan, build_plan
from runner.checking.plan_render import render_plan
from runner.core import findings
from runner.core.findings import Finding
from runner.core.lifecycle import Change
from runner.core.model import Status

BASE = "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
STEP = "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"


@dataclass(frozen=True)
class FakeChange:
    """The fields of runner.core.lifecycle.Change that the plan reads."""

    id: str
    kind: str
    old_path: str | None = None
    new_path: str | None = None
    old_status: Status | None = None
    new_status: Status | None = None
    transition: bool = False
    edited: tuple[str, ...] = ()
    lifecycle: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()


EDIT = findings.make(
    "edit-not-allowed", "automations/welcome.yaml", "`email.subject` changed while running", 9, 3
)
RENAME = findings.make(
    "rename-resets-dedupe", "automations/new-cart.yaml", "`cart` became `new-cart`"
)

WELCOME = FakeChange(
    "welcome",
    "modified",
    "automations/welcome.yaml",
    "automations/welcome.yaml",
    Status.RUNNING,
    Status.RUNNING,
    edited=("email.subject",),
    findings=(EDIT,),
)
PAUSE = FakeChange(
    "digest",
    "modified",
    "automations/digest.yaml",
    "automations/digest.yaml",
    Status.RUNNING,
    Status.PAUSED,
    transition=True,
    edited=("email.html",),
    lifecycle=("stop_at",),
    metadata=("name", "labels"),
)
MOVED = FakeChange(
    "birthday",
    "moved",
    "automations/birthday.yaml",
    "automations/yearly/birthday.yaml",
    Status.RUNNING,
    Status.RUNNING,
)
CREATED = FakeChange(
    "new-cart",
    "created",
    None,
    "automations/new-cart.yaml",
    None,
    Status.DRAFT,
    transition=True,
    findings=(RENAME,),
)
DELETED = FakeChange("cart", "deleted", "automations/cart.yaml", None, Status.PAUSED, None)
SAME = FakeChange("order", "unchanged", "automations/order.yaml", "automations/order.yaml")

ALL = [MOVED, DELETED, PAUSE, CREATED, SAME, WELCOME]


def plan_of(
    net: list[FakeChange], steps: list[tuple[str | None, list[FakeChange]]] | None = None
) -> Plan:
    return build_plan(net, [(STEP, net)] if steps is None else steps, base=BASE, head=None)


def rendered(plan: Plan, fmt: str) -> str:
    out = io.StringIO()
    render_plan(plan, fmt, out)
    return out.getvalue()


def test_entries_sorted_and_unchanged_counted() -> None:
    plan = plan_of(ALL)
    assert [e.id for e in plan.entries] == ["birthday", "cart", "digest", "new-cart", "welcome"]
    assert plan.unchanged == 1
    assert plan.blocked


def test_blocked_notes_carry_the_step_commit() -> None:
    plan = plan_of([WELCOME])
    (entry,) = plan.entries
    (note,) = entry.blocked
    assert (note.rule, note.commit) == ("edit-not-allowed", STEP)
    assert note.help == "set `status: paused` in an earlier commit, then edit"


def test_warnings_do_not_block() -> None:
    plan = plan_of([CREATED])
    assert not plan.blocked
    assert [n.rule for n in plan.entries[0].warnings] == ["rename-resets-dedupe"]


def test_net_error_legal_in_every_step_is_not_blocked() -> None:
    """The squash case: each commit legal, only the net change breaks a rule."""
    legal = FakeChange("welcome", "modified", edited=("email.subject",))
    squash = findings.make("squash-unsafe", "a.yaml", "net edit", automation="welcome")
    plan = build_plan(
        [WELCOME], [(BASE, [legal]), (STEP, [legal])], base=BASE, head=None, findings=[squash]
    )
    (entry,) = plan.entries
    assert entry.blocked == ()
    assert [n.rule for n in entry.warnings] == ["squash-unsafe"]


def test_without_steps_net_findings_block() -> None:
    plan = build_plan([WELCOME], [], base=None, head=None)
    assert plan.blocked
    assert plan.entries[0].blocked[0].commit is None


def test_unchanged_but_blocked_on_the_way_is_shown() -> None:
    """Edited while running, then reverted: net unchanged, yet a commit broke a rule."""
    reverted = FakeChange("welcome", "unchanged", "automations/welcome.yaml")
    plan = build_plan([reverted], [(STEP, [WELCOME])], base=BASE, head=None)
    assert [(e.id, e.change) for e in plan.entries] == [("welcome", "unchanged")]
    assert plan.blocked
    assert plan.unchanged == 0


def test_a_refusal_met_again_later_names_the_first_commit() -> None:
    plan = build_plan(
        [WELCOME], [(BASE, [WELCOME]), (STEP, [WELCOME]), (None, [WELCOME])], base=None, head=None
    )
    assert [n.commit for n in plan.entries[0].blocked] == [BASE]


def test_known_ids_count_as_unchanged() -> None:
    plan = build_plan([WELCOME], [], base=None, head=None, known_ids={"welcome", "a", "b"})
    assert plan.unchanged == 2


def test_other_errors_counted() -> None:
    schema = findings.make("schema", "automations/x.yaml", "unknown key")
    plan = build_plan([], [], base=BASE, head=None, findings=[schema, EDIT])
    assert plan.other_errors == 1
    assert "1 other errors in the files" in rendered(plan, "text")


def test_text_plain_when_not_a_terminal() -> None:
    text = rendered(plan_of(ALL), "text")
    assert text.splitlines()[:3] == [
        "plan 1111111 -> working tree",
        "birthday: moved automations/birthday.yaml -> automations/yearly/birthday.yaml",
        "cart: deleted automations/cart.yaml",
    ]
    assert "digest: modified automations/digest.yaml\n  status: running -> paused\n" in text
    assert "  edited: email.html\n  lifecycle: stop_at\n  metadata: name, labels\n" in text
    assert "new-cart: created automations/new-cart.yaml\n  status: (new) -> draft\n" in text
    assert (
        "  blocked: edit-not-allowed: `email.subject` changed while running [commit 2222222]\n"
        "    help: set `status: paused` in an earlier commit, then edit\n"
    ) in text
    assert text.endswith("5 changed, 1 unchanged, 1 blocked\n")
    assert "\x1b[" not in text


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_is_a_rich_table_on_a_terminal() -> None:
    out = _Tty()
    render_plan(plan_of(ALL), "text", out)
    text = out.getvalue()
    assert "automation" in text and "details" in text
    assert "edit-not-allowed" in text
    assert "\x1b[" in text


def test_text_when_nothing_changed() -> None:
    assert rendered(plan_of([SAME]), "text") == (
        "plan 1111111 -> working tree\nno automation changes (1 unchanged)\n"
    )


def test_json_fields() -> None:
    document = json.loads(rendered(plan_of(ALL), "json"))
    assert document["version"] == 1
    assert (document["base"], document["head"]) == (BASE, None)
    assert document["unchanged"] == 1
    by_id = {a["id"]: a for a in document["automations"]}
    assert by_id["digest"] == {
        "id": "digest",
        "change": "modified",
        "old_path": "automations/digest.yaml",
        "new_path": "automations/digest.yaml",
        "status": {"from": "running", "to": "paused"},
        "edited": ["email.html"],
        "lifecycle": ["stop_at"],
        "metadata": ["name", "labels"],
        "blocked": [],
        "warnings": [],
    }
    assert by_id["birthday"]["status"] is None
    assert by_id["welcome"]["blocked"] == [
        {
            "rule": "edit-not-allowed",
            "message": "`email.subject` changed while running",
            "help": "set `status: paused` in an earlier commit, then edit",
            "commit": STEP,
        }
    ]


def test_markdown_table_and_blocked_section() -> None:
    text = rendered(plan_of(ALL), "markdown")
    assert text.startswith("## Postwright plan\n\nFrom `1111111` to the working tree.\n\n")
    assert (
        "| automation | change | path | status | edited | lifecycle | metadata | blocked |" in text
    )
    assert (
        "| `digest` | modified | `automations/digest.yaml` | running -> paused | `email.html` "
        "| `stop_at` | `name`, `labels` |  |"
    ) in text
    assert "| `welcome` | **modified** |" in text
    assert "**`edit-not-allowed`** |" in text
    assert "### Blocked\n\n- `welcome`: `edit-not-allowed` `email.subject` changed" in text
    assert "### Warnings\n\n- `new-cart`: `rename-resets-dedupe`" in text
    assert "5 changed, 1 unchanged, 1 blocked." in text


def test_markdown_escapes_pipes() -> None:
    piped = FakeChange("a", "modified", "automations/a.yaml", "automations/a.yaml", edited=("x|y",))
    assert "`x\\|y`" in rendered(plan_of([piped]), "markdown")


def test_markdown_when_nothing_changed() -> None:
    text = rendered(build_plan([], [], base=None, head=None), "markdown")
    assert text == (
        "## Postwright plan\n\nFrom `HEAD` to the working tree.\n\n"
        "No automation changes (0 unchanged).\n"
    )


def test_reads_lifecycle_changes() -> None:
    real = Change(
        "welcome",
        "modified",
        "automations/welcome.yaml",
        "automations/welcome.yaml",
        Status.RUNNING,
        Status.PAUSED,
        True,
        edited=("email.subject",),
    )
    (entry,) = build_plan([real], [(STEP, [real])], base=BASE, head=None).entries
    assert entry.status == ("running", "paused")
    assert entry.edited == ("email.subject",)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown plan format"):
        rendered(plan_of([]), "html")
