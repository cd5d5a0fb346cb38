"""Judging one step of versions against what the runner holds (runner/core/steps.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from runner.checking.tree import TreeChecker
from runner.core.steps import Held, Proposed, judge_step, repaired, replay
from runner.repo.snapshot import MemorySnapshot
from tests.gitrepo import automation

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CHECKER = TreeChecker()


def proposed(**files: str) -> Proposed:
    """The versions of a snapshot holding `files` (id -> text)."""
    snapshot = MemorySnapshot({f"automations/{i}.yaml": t.encode() for i, t in files.items()})
    tree = CHECKER.check(snapshot, T0)
    return Proposed(tree.versions, tree.invalid_files())


def test_a_refused_edit_keeps_the_held_version_and_a_pause_repairs_it() -> None:
    steps = replay(
        Held({}),
        [
            proposed(a=automation("a", "running", "Old")),
            proposed(a=automation("a", "running", "New")),  # edit while running: refused
            proposed(a=automation("a", "paused", "New")),  # pause with the edit: accepted
        ],
        T0,
    )
    verdicts = [{i: o.accepted for i, o in s.outcomes().items()} for s in steps]
    assert verdicts == [{"a": True}, {"a": False}, {"a": True}]
    assert [r.rule for r in steps[1].outcomes()["a"].findings] == ["edit-not-allowed"]
    assert steps[1].held.versions["a"].model.email.subject == "Old"
    assert steps[2].held.versions["a"].model.email.subject == "New"
    assert repaired(steps) == {(1, "a")}


def test_an_invalid_file_is_refused_and_a_deleted_id_is_retired() -> None:
    first = judge_step(Held({}), proposed(a=automation("a", "draft")), T0)
    broken = judge_step(first.held, proposed(a="id: a\nstatus: [\n"), T0)
    assert not broken.outcomes()["a"].accepted
    assert broken.held.versions == first.held.versions
    gone = judge_step(broken.held, proposed(), T0)
    assert (gone.held.versions, gone.held.retired) == ({}, frozenset({"a"}))
    again = judge_step(gone.held, proposed(a=automation("a", "draft")), T0)
    assert [f.rule for f in again.outcomes()["a"].findings] == ["id-reused"]
    assert repaired([first, broken, gone, again]) == {(1, "a")}


def test_only_the_judged_ids_are_judged_and_taken() -> None:
    held = judge_step(Held({}), proposed(a=automation("a", "draft")), T0).held
    step = judge_step(
        held, proposed(a=automation("a", "running"), b=automation("b", "draft")), T0, {"b"}
    )
    assert set(step.outcomes()) == {"b"}
    assert step.held.versions["a"] is held.versions["a"]
    assert set(step.held.versions) == {"a", "b"}
