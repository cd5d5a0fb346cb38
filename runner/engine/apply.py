"""Applying the automation files to the store: each file version is compared with the applied
one by the lifecycle rules (docs/rules.md); legal changes are applied, the others refused.

Refused or invalid files leave the last applied version live; every applied change is recorded
in the history with its commit and previous value. `AppliedVersions` keeps the parsed applied
versions between applies, and `only` limits a step to the ids whose files changed, so a reload
of one file costs one file: automations whose files did not change are not touched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from runner.core.desired import DesiredState
from runner.core.findings import Finding
from runner.core.lifecycle import Change
from runner.core.model import Status
from runner.core.records import AppliedAutomation, CancelReason, HistoryEntry
from runner.core.steps import Held, Proposed, judge_step
from runner.core.version import Version
from runner.engine.catalog import DELETED, Catalog, version_of
from runner.engine.status_changes import (
    advance_one,
    bump_revision,
    cancel_active,
    recorded_status,
)
from runner.store.base import WriteTx

_STARTING = (Status.SCHEDULED, Status.RUNNING)
_STOPPING = (Status.SCHEDULED, Status.RUNNING, Status.PAUSED)


@dataclass
class ApplyReport:
    """What one apply did: (id, what) per applied change, the refused changes, and the checked
    ids whose file version is now the live one (applied, or equal to the applied one)."""

    applied: list[tuple[str, str]] = field(default_factory=list)
    refused: list[Change] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)  # left alone: the row changed since the plan


class AppliedVersions:
    """The applied versions by id, parsed once and reused while their row is unchanged."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[AppliedAutomation, Version]] = {}

    @classmethod
    def of(cls, catalog: Catalog) -> AppliedVersions:
        """Seeded with a catalog's versions (the worker's cached ones)."""
        versions = cls()
        for ident, live in catalog.by_id.items():
            versions._known[ident] = (live.row, live.version)
        return versions

    def parents(self, rows: Iterable[AppliedAutomation]) -> dict[str, Version]:
        """The version of every applied, non-deleted row."""
        found: dict[str, Version] = {}
        for row in rows:
            if row.status == DELETED:
                continue
            known = self._known.get(row.id)
            if known is None or not _same_version(known[0], row):
                known = (row, version_of(row))
                self._known[row.id] = known
            found[row.id] = known[1]
        return found

    def remember(self, row: AppliedAutomation, version: Version) -> None:
        """`version` is what `row` holds (saved by this apply)."""
        self._known[row.id] = (row, version)


def _same_version(known: AppliedAutomation, row: AppliedAutomation) -> bool:
    return (known.revision, known.path, known.source, known.templates) == (
        row.revision,
        row.path,
        row.source,
        row.templates,
    )


@dataclass
class ApplyPlan:
    """The changes of one step, judged but not yet applied."""

    tree: DesiredState
    changes: list[Change]
    children: dict[str, Version]
    invalid: dict[str, tuple[Finding, ...]]
    rows: dict[str, AppliedAutomation]

    @property
    def deletes(self) -> list[str]:
        """Ids this step would unload (legal or not)."""
        return [c.id for c in self.changes if c.kind == "deleted" and c.id not in self.invalid]

    @property
    def live_count(self) -> int:
        """Applied automations not deleted before this step."""
        return sum(row.status != DELETED for row in self.rows.values())


@dataclass(frozen=True)
class _Step:
    tx: WriteTx
    tree: DesiredState
    now: datetime
    commit: str | None


def apply_files(
    tx: WriteTx,
    tree: DesiredState,
    now: datetime,
    commit: str | None,
    *,
    versions: AppliedVersions | None = None,
    only: Collection[str] | None = None,
) -> ApplyReport:
    """Apply the checked files of `tree` at `now` (a whole state: missing files are deletes).

    With `only`, just those ids are compared and applied (the others are not read, judged or
    written); `versions` reuses parsed applied versions across calls.
    """
    versions = versions if versions is not None else AppliedVersions()
    plan = plan_files(tx, tree, now, versions=versions, only=only)
    return execute(tx, plan, now, commit, versions)


def plan_files(
    tx: WriteTx,
    tree: DesiredState,
    now: datetime,
    *,
    versions: AppliedVersions,
    only: Collection[str] | None = None,
) -> ApplyPlan:
    """Judge the files of `tree` against the applied state (records lifecycle moments now due
    for the judged ids first, so a passed `start_at` counts)."""
    tx.lock_lifecycle()  # replicas applying together: the later one plans on the first's result
    rows = {row.id: row for row in tx.automations()}
    parents = versions.parents(rows.values())
    invalid = tree.invalid_files()
    judged = set(parents) | set(tree.versions) | set(invalid) if only is None else set(only)
    advanced = [
        i for i in sorted(judged & parents.keys()) if _advance_due(tx, rows[i], parents[i], now)
    ]
    if advanced:
        bump_revision(tx)
        for ident in advanced:
            rows[ident] = tx.automation(ident) or rows[ident]
    retired = frozenset(ident for ident, row in rows.items() if row.status == DELETED)
    step = judge_step(Held(parents, retired), Proposed(tree.versions, invalid), now, judged)
    changes = list(step.changes)
    for ident in sorted(step.invalid.keys() - step.children.keys()):  # never applied: reported
        changes.append(Change(ident, "created", None, None, None, None, False))
    return ApplyPlan(tree, changes, dict(step.children), dict(step.invalid), rows)


def execute(
    tx: WriteTx,
    plan: ApplyPlan,
    now: datetime,
    commit: str | None,
    versions: AppliedVersions | None = None,
) -> ApplyReport:
    """Apply the legal changes of `plan`; report them and the refused ones."""
    report = ApplyReport()
    step = _Step(tx, plan.tree, now, commit)
    rows, children = plan.rows, plan.children
    for change in plan.changes:
        saved: AppliedAutomation | None = None
        if change.id in plan.invalid:
            report.refused.append(_invalid_change(change, rows.get(change.id), plan.invalid))
            continue
        if change.blocked:
            report.refused.append(change)
            continue
        if change.kind != "unchanged" and not _still_planned(tx, plan, change.id):
            report.moved.append(change.id)
            continue
        if change.kind == "created":
            what, saved = _create(step, children[change.id])
        elif change.kind == "deleted":
            what, saved = _delete(step, rows[change.id])
        elif change.kind == "unchanged":
            report.accepted.append(change.id)
            continue
        else:
            what, saved = _update(step, rows[change.id], children[change.id], change)
        report.applied.append((change.id, what))
        report.accepted.append(change.id)
        if versions is not None and saved.status != DELETED:
            versions.remember(saved, children[change.id])
    if report.applied:
        bump_revision(tx)
    return report


def _still_planned(tx: WriteTx, plan: ApplyPlan, ident: str) -> bool:
    """Compare-and-set: the applied row is still the one the plan was made from (another
    runner may have applied or advanced it since, when the plan was made in another
    transaction); the row is read again under the lifecycle lock."""
    tx.lock_lifecycle()
    return tx.automation(ident) == plan.rows.get(ident)


def _advance_due(tx: WriteTx, row: AppliedAutomation, version: Version, now: datetime) -> bool:
    """Record the start or stop of one automation when its moment has come."""
    model = version.model
    start_due = (
        row.started_at is None
        and model.status in _STARTING
        and model.start_at is not None
        and model.start_at <= now
    )
    stop_due = (
        row.stopped_at is None
        and model.status in _STOPPING
        and model.stop_at is not None
        and model.stop_at <= now
    )
    return (start_due or stop_due) and advance_one(tx, row.id, now)


def _invalid_change(
    change: Change, row: AppliedAutomation | None, invalid: Mapping[str, tuple[Finding, ...]]
) -> Change:
    old_path = row.path if row is not None and row.status != DELETED else None
    return replace(
        change,
        kind="modified" if old_path is not None else "created",
        old_path=old_path,
        new_path=invalid[change.id][0].path if invalid[change.id] else old_path,
        findings=invalid[change.id],
    )


# --- the three kinds of applied change -------------------------------------------------


def _source(tree: DesiredState, path: str) -> str:
    content = tree.read(path)
    assert content is not None, f"{path} was checked but cannot be read"
    return content.decode("utf-8")


def definition(row: AppliedAutomation) -> dict[str, Any]:
    """The history value of an applied definition (templates included)."""
    return {
        "revision": row.revision,
        "path": row.path,
        "source": row.source,
        "templates": dict(row.templates),
    }


def _create(step: _Step, version: Version) -> tuple[str, AppliedAutomation]:
    status = version.model.status
    row = AppliedAutomation(
        id=version.id,
        revision=1,
        status=status.value,
        source=_source(step.tree, version.path),
        templates=dict(version.templates),
        path=version.path,
        commit=step.commit,
        applied_at=step.now,
        started_at=step.now if status is Status.RUNNING else None,
        stopped_at=None,
    )
    step.tx.save_automation(row)
    _history(step, row.id, "definition", None, definition(row), "created")
    _history(step, row.id, "status", None, status.value)
    return f"created as {status.value}", row


def _delete(step: _Step, row: AppliedAutomation) -> tuple[str, AppliedAutomation]:
    previous = recorded_status(step.tx, row.id)
    deleted = replace(
        row,
        revision=row.revision + 1,
        status=DELETED,
        commit=step.commit,
        applied_at=step.now,
        stopped_at=row.stopped_at or step.now,
    )
    step.tx.save_automation(deleted)
    _history(step, row.id, "status", previous, DELETED)
    cancel_active(step.tx, row.id, CancelReason.DELETED, step.now)
    return "deleted", deleted


def _update(
    step: _Step, old: AppliedAutomation, version: Version, change: Change
) -> tuple[str, AppliedAutomation]:
    status = version.model.status
    started_at, stopped_at = old.started_at, old.stopped_at
    if change.transition and status is Status.RUNNING and started_at is None:
        started_at = step.now  # draft or scheduled started now
    if change.transition and status is Status.STOPPED:
        stopped_at = step.now
    row = replace(
        old,
        revision=old.revision + 1,
        status=status.value,
        source=_source(step.tree, version.path),
        templates=dict(version.templates),
        path=version.path,
        commit=step.commit,
        applied_at=step.now,
        started_at=started_at,
        stopped_at=stopped_at,
    )
    step.tx.save_automation(row)
    what: list[str] = []
    changed = (*change.edited, *change.lifecycle)
    if changed:
        _history(step, row.id, "definition", definition(old), definition(row), ", ".join(changed))
        what.append("edited" if change.edited else "times changed")
    if change.transition:
        _history(step, row.id, "status", recorded_status(step.tx, row.id), status.value)
        if status is Status.STOPPED:
            cancel_active(step.tx, row.id, CancelReason.STOPPED, step.now)
        what.append(status.value)
    if change.metadata:
        what.append("metadata")
    if old.path != row.path:
        what.append("moved")
    return ", ".join(what) or "updated", row


def _history(
    step: _Step, ident: str, kind: str, previous: Any, value: Any, detail: str | None = None
) -> None:
    entry = HistoryEntry(ident, step.now, kind, previous, value, step.commit, detail)
    step.tx.add_history(entry)
