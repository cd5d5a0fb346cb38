"""Lifecycle rules between two states of the automations (docs/rules.md); pure.

`effective_status` judges one automation at one instant; `check_step` compares
every automation before and after a step (a commit, a reload, a whole pull
request) and returns one `Change` per id with the findings it breaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from runner.core import findings
from runner.core.findings import Finding, Severity
from runner.core.model import Automation, EmailTrigger, Status
from runner.core.version import BODY_FILES, METADATA, Version, diff_paths

D, SC, R, P, ST = (Status.DRAFT, Status.SCHEDULED, Status.RUNNING, Status.PAUSED, Status.STOPPED)

# Allowed transitions, parent's effective status -> child's written status
# (docs/rules.md "Status transitions").
# The key None is a new file. A status to itself is never a transition.
TRANSITIONS: dict[Status | None, frozenset[Status]] = {
    None: frozenset({D, SC, R}),
    D: frozenset({SC, R}),
    SC: frozenset({D, R}),
    R: frozenset({P, ST}),
    P: frozenset({R, ST}),
    ST: frozenset(),
}
TRANSITION_NOTES: dict[tuple[Status, Status], str] = {
    (SC, D): "cancel",
    (SC, R): "start now",
    (P, R): "restart",
}
# An edit is allowed when the parent's effective status or the child's is one of these.
EDITABLE = frozenset({D, P})

_TRANSITION_HELP: dict[Status | None, str] = {
    None: "create it as draft, scheduled or running",
    D: "schedule it or start it (`status: running`) first",
    SC: "cancel it to draft, or start it now with `status: running`",
    R: "pause or stop it",
    P: "restart it with `status: running`, or stop it",
    ST: "a stopped automation is final: create a new automation with a new id",
}
_EDIT_HELP: dict[Status, str] = {
    R: "set `status: paused` in an earlier commit, then edit",
    SC: "set `status: draft` in an earlier commit, then edit",
    ST: "a stopped automation is final: create a new automation with a new id",
}
LIFECYCLE_TIMES = ("start_at", "stop_at")

Kind = Literal["created", "deleted", "moved", "modified", "unchanged"]


def effective_status(model: Automation, now: datetime) -> Status:
    """The status the automation has at `now`.

    Scheduled becomes running at `start_at`; a started automation becomes
    stopped at `stop_at` (for scheduled only once `start_at` has passed too).
    """
    status = model.status
    if status is SC and model.start_at is not None and model.start_at <= now:
        status = R
    if status in (R, P) and model.stop_at is not None and model.stop_at <= now:
        return ST
    return status


def transition_allowed(old: Status | None, new: Status) -> bool:
    """Whether the table allows `old` (effective; None for a new file) -> `new` (written)."""
    return new in TRANSITIONS[old]


@dataclass(frozen=True)
class Change:
    """What happened to one automation id in one step, and the rules it broke."""

    id: str
    kind: Kind
    old_path: str | None
    new_path: str | None
    old_status: Status | None
    new_status: Status | None
    transition: bool
    edited: tuple[str, ...] = ()
    lifecycle: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def blocked(self) -> bool:
        """Whether any finding of the change is an error."""
        return any(f.severity is Severity.ERROR for f in self.findings)


def check_step(
    parents: Mapping[str, Version],
    children: Mapping[str, Version],
    now: datetime,
    *,
    retired_ids: AbstractSet[str] = frozenset(),
) -> list[Change]:
    """One `Change` per id in `parents | children`, sorted by id.

    `parents` and `children` map ids to the last valid versions before and
    after the step; `retired_ids` are ids deleted before the parent state.
    """
    deleted_now = frozenset(parents.keys() - children.keys())
    renamed_from = _rename_pairs(parents, children)
    changes: list[Change] = []
    for ident in sorted(parents.keys() | children.keys()):
        old, new = parents.get(ident), children.get(ident)
        if new is None:
            assert old is not None
            changes.append(_deleted(old, now))
            continue
        if old is None:
            change = _created(new, now, retired_ids, renamed_from.get(ident))
        else:
            change = _between(old, new, now)
        sources = _source_findings(old, new, children, deleted_now, retired_ids, now)
        if sources:
            change = replace(change, findings=(*change.findings, *sources))
        changes.append(change)
    return changes


# --- the three shapes of a change ----------------------------------------------


def _deleted(old: Version, now: datetime) -> Change:
    status = effective_status(old.model, now)
    found = []
    if status is R:
        found.append(
            findings.make(
                "delete-running",
                old.path,
                f"`{old.id}` was deleted while it is running",
                automation=old.id,
            )
        )
    return Change(old.id, "deleted", old.path, None, status, None, False, findings=tuple(found))


def _created(new: Version, now: datetime, retired: AbstractSet[str], renamed: str | None) -> Change:
    status = new.model.status
    found = _transition_findings(new, None, status)
    found += _stop_at_findings(new, None, new.model.stop_at, None, now)
    line, col = new.position("id")
    if new.id in retired:
        message = f"`{new.id}` is the id of an automation deleted earlier; ids are never reused"
        found.append(findings.make("id-reused", new.path, message, line, col, automation=new.id))
    if renamed is not None:
        message = (
            f"`{new.id}` replaces the deleted `{renamed}`: it starts with fresh stats "
            "and retrigger memory"
        )
        found.append(
            findings.make("rename-resets-dedupe", new.path, message, line, col, automation=new.id)
        )
    return Change(new.id, "created", None, new.path, None, status, True, findings=tuple(found))


def _between(old: Version, new: Version, now: datetime) -> Change:
    before, after = old.model, new.model
    reached = effective_status(before, now)
    transition = after.status not in (before.status, reached)
    edited = tuple(diff_paths(old.definition, new.definition))
    lifecycle = tuple(key for key in LIFECYCLE_TIMES if getattr(before, key) != getattr(after, key))
    old_meta, new_meta = old.metadata(), new.metadata()
    metadata = tuple(key for key in METADATA if old_meta[key] != new_meta[key])

    found = _transition_findings(new, reached, after.status) if transition else []
    found += _edit_findings(new, reached, edited, transition)
    found += _start_at_findings(new, before.start_at, reached)
    if after.stop_at != before.stop_at:
        found += _stop_at_findings(new, before.stop_at, after.stop_at, reached, now)

    kind: Kind = "unchanged"
    if after.status != before.status or edited or lifecycle or metadata:
        kind = "modified"
    elif old.path != new.path:
        kind = "moved"
    return Change(
        new.id,
        kind,
        old.path,
        new.path,
        reached,
        after.status,
        transition,
        edited,
        lifecycle,
        metadata,
        tuple(found),
    )


# --- the rules ------------------------------------------------------------------


def _transition_findings(new: Version, old: Status | None, status: Status) -> list[Finding]:
    if transition_allowed(old, status):
        return []
    if old is None:
        message = f"a new automation cannot start as {status}"
    else:
        message = f"status cannot change from {old} to {status}"
    line, col = new.position("status")
    return [
        findings.make(
            "transition-not-allowed",
            new.path,
            message,
            line,
            col,
            help=_TRANSITION_HELP[old],
            automation=new.id,
        )
    ]


def _edit_findings(
    new: Version, reached: Status, edited: tuple[str, ...], transition: bool
) -> list[Finding]:
    if not edited:
        return []
    # A stopped automation is final, whatever status the child writes.
    if reached is not ST and (reached in EDITABLE or new.model.status in EDITABLE):
        return []
    while_ = f"goes from {reached} to {new.model.status}" if transition else f"is {reached}"
    line, col = min(_edit_position(new, dotted) for dotted in edited)
    return [
        findings.make(
            "edit-not-allowed",
            new.path,
            f"{_list_fields(edited)} changed while the automation {while_}",
            line,
            col,
            help=_EDIT_HELP.get(reached),
            automation=new.id,
        )
    ]


def _start_at_findings(new: Version, before: datetime | None, reached: Status) -> list[Finding]:
    after = new.model.start_at
    if after is None or after == before:
        return []  # unchanged or removed: allowed in any status
    status = new.model.status
    verb = "added" if before is None else "changed"
    if status is not SC:
        message = f"`start_at` {verb} while the status is {status}"
        help = None
    elif reached not in (D, SC):
        # Written scheduled but already started: moving start_at cannot un-start it.
        message = f"`start_at` {verb} after the automation started (it is {reached})"
        help = "a started automation keeps its start: leave `start_at` as it was"
    else:
        return []
    line, col = new.position("start_at", key=True)
    return [
        findings.make(
            "start-at-not-scheduled", new.path, message, line, col, help=help, automation=new.id
        )
    ]


def _stop_at_findings(
    new: Version,
    before: datetime | None,
    after: datetime | None,
    reached: Status | None,
    now: datetime,
) -> list[Finding]:
    if reached is ST:
        verb = "added" if before is None else "removed" if after is None else "moved"
        line, col = new.position("stop_at" if after is not None else "status", key=True)
        message = f"`stop_at` {verb} after the automation stopped"
        return [
            findings.make("stop-at-after-stop", new.path, message, line, col, automation=new.id)
        ]
    if after is None or after > now:
        return []
    line, col = new.position("stop_at", key=True)
    message = f"`stop_at` {_instant(after)} is not later than now ({_instant(now)})"
    return [findings.make("stop-at-in-past", new.path, message, line, col, automation=new.id)]


def _source_findings(
    old: Version | None,
    new: Version,
    children: Mapping[str, Version],
    deleted_now: AbstractSet[str],
    retired: AbstractSet[str],
    now: datetime,
) -> list[Finding]:
    trigger = new.model.trigger
    if not isinstance(trigger, EmailTrigger):
        return []
    before = old.model.trigger if old is not None else None
    if isinstance(before, EmailTrigger) and before.automation == trigger.automation:
        return []  # an existing reference: `source-stopped` (semantics) warns about it
    source = trigger.automation
    if source in children:
        if effective_status(children[source].model, now) is not ST:
            return []
        state = "is stopped"
    elif source in deleted_now:
        state = "is deleted in this change"
    elif source in retired:
        state = "was deleted earlier"
    else:
        return []  # unknown ids are `unknown-automation` (semantics)
    line, col = new.position("trigger", "automation")
    message = f"the email trigger names `{source}`, which {state}"
    return [findings.make("source-unavailable", new.path, message, line, col, automation=new.id)]


def _rename_pairs(
    parents: Mapping[str, Version], children: Mapping[str, Version]
) -> dict[str, str]:
    """Created id -> the deleted id it looks like a rename of (one to one)."""
    deleted = sorted(parents.keys() - children.keys())
    pairs: dict[str, str] = {}
    for ident in sorted(children.keys() - parents.keys()):
        new = children[ident]
        for old_id in deleted:
            old = parents[old_id]
            if old.path == new.path or _without_id(old.definition) == _without_id(new.definition):
                pairs[ident] = old_id
                deleted.remove(old_id)
                break
    return pairs


# --- small helpers ----------------------------------------------------------------


def _without_id(definition: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in definition.items() if key != "id"}


def _edit_position(version: Version, dotted: str) -> tuple[int, int]:
    """Where a dotted definition path is written; a body read from a file is its `*_file` key."""
    parts = tuple(dotted.split("."))
    if len(parts) == 2 and parts[0] == "email":
        files = {body: key for key, body in BODY_FILES.items()}
        key = files.get(parts[1])
        if key is not None and key in version.templates:
            parts = ("email", key)
    return version.position(*parts, key=True)


def _list_fields(paths: tuple[str, ...], shown: int = 3) -> str:
    names = [f"`{path}`" for path in paths]
    if len(names) > shown:
        more = len(names) - shown
        return f"{', '.join(names[:shown])} and {more} more field{'s' if more > 1 else ''}"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _instant(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
