"""Applying the automation files to the store (SPEC 2.2, 3.6, 6), and every other writer of
status history (scheduled starts, `stop_at` stops): each file version is compared
with the applied one by the lifecycle rules; legal changes are applied, the others refused.

Refused or invalid files leave the last applied version live; every applied change is recorded
in the history with its commit and previous value. `AppliedVersions` keeps the parsed applied
versions between applies, and `only` limits a step to the ids whose files changed, so a reload
of one file costs one file (SPEC 6: automations whose files did not change are not touched).
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from runner.engine.catalog import DELETED, Catalog, version_of
from runner.findings import Finding, Severity
from runner.lifecycle import Change, check_step
from runner.model import EmailTrigger, Status
from runner.store.base import ReadTx, WriteTx
from runner.store.records import AppliedAutomation, CancelReason, HistoryEntry
from runner.tree import Tree
from runner.version import Version

REVISION_META = "catalog_revision"
_RUNNING, _PAUSED, _STOPPED = (Status.RUNNING.value, Status.PAUSED.value, Status.STOPPED.value)
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

    tree: Tree
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
    tree: Tree
    now: datetime
    commit: str | None


def apply_files(
    tx: WriteTx,
    tree: Tree,
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
    tree: Tree,
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
    invalid = invalid_files(tree)
    judged = set(parents) | set(tree.versions) | set(invalid) if only is None else set(only)
    advanced = [
        i for i in sorted(judged & parents.keys()) if _advance_due(tx, rows[i], parents[i], now)
    ]
    if advanced:
        bump_revision(tx)
        for ident in advanced:
            rows[ident] = tx.automation(ident) or rows[ident]
    retired = {ident for ident, row in rows.items() if row.status == DELETED}
    children = {ident: v for ident, v in tree.versions.items() if ident not in invalid}
    for ident in invalid.keys() & parents.keys():
        children[ident] = parents[ident]  # an invalid file keeps the applied version live
    if only is not None:
        parents, children = _restrict(parents, children, judged)
    changes = [
        change
        for change in check_step(parents, children, now, retired_ids=retired)
        if change.id in judged
    ]
    invalid = {ident: found for ident, found in invalid.items() if ident in judged}
    for ident in sorted(invalid.keys() - children.keys()):  # never applied: still reported
        changes.append(Change(ident, "created", None, None, None, None, False))
    return ApplyPlan(tree, changes, children, invalid, rows)


def _restrict(
    parents: Mapping[str, Version], children: Mapping[str, Version], judged: set[str]
) -> tuple[dict[str, Version], dict[str, Version]]:
    """The judged ids, plus the email-trigger sources they name as context (unchanged)."""
    some_parents = {i: parents[i] for i in judged if i in parents}
    some_children = {i: children[i] for i in judged if i in children}
    for version in list(some_children.values()):
        trigger = version.model.trigger
        source = trigger.automation if isinstance(trigger, EmailTrigger) else None
        if source is None or source in judged:
            continue
        if source in parents:  # judged as applied: its own file change is not this step's
            some_parents[source] = some_children[source] = parents[source]
        elif source in children:
            some_children[source] = children[source]
    return some_parents, some_children


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
    return (start_due or stop_due) and _advance_one(tx, row.id, now)


def invalid_files(tree: Tree) -> dict[str, tuple[Finding, ...]]:
    """Automation id (the file stem when it does not load) -> the errors that refuse its file."""
    errors: dict[str, list[Finding]] = {}
    for finding in tree.findings:
        if finding.severity is Severity.ERROR:
            errors.setdefault(finding.path, []).append(finding)
    invalid: dict[str, tuple[Finding, ...]] = {}
    for path, result in tree.files.items():
        model = result.loaded.model
        ident = model.id if model is not None else posixpath.basename(path)[: -len(".yaml")]
        if result.version is None or path in errors:
            found = errors.get(path) or [f for f in result.findings if f.severity is Severity.ERROR]
            invalid[ident] = (*invalid.get(ident, ()), *found)
    return invalid


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


def _source(tree: Tree, path: str) -> str:
    content = tree.snapshot.read(path)
    assert content is not None, f"{path} was checked but cannot be read"
    return content.decode("utf-8")


def definition(row: AppliedAutomation) -> dict[str, Any]:
    """The history value of an applied definition (SPEC 3.6: templates included)."""
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


# --- lifecycle moments ------------------------------------------------------------------


def advance_lifecycle(tx: WriteTx, catalog: Catalog, now: datetime) -> bool:
    """Record scheduled starts and `stop_at` stops that have come; True when any was recorded.

    The catalog only preselects; the row and history are read again inside the transaction, so
    two runners never record the same moment twice (the lifecycle lock and a claim_once key
    per moment decide it in the database).
    """
    changed = False
    for ident in sorted(catalog.by_id):
        live = catalog.by_id[ident]
        model = live.model
        due_start = (
            live.status == Status.SCHEDULED.value
            and model.start_at is not None
            and model.start_at <= now
        )
        due_stop = live.status in (_RUNNING, _PAUSED, Status.SCHEDULED.value) and (
            model.stop_at is not None and model.stop_at <= now
        )
        if live.row.status == DELETED or not (due_start or due_stop):
            continue
        changed = _advance_one(tx, ident, now) or changed
    if changed:
        bump_revision(tx)
    return changed


def _advance_one(tx: WriteTx, ident: str, now: datetime) -> bool:
    tx.lock_lifecycle()  # another replica's tick may have recorded this moment: read it
    row = tx.automation(ident)
    if row is None or row.status == DELETED:
        return False
    model = version_of(row).model
    recorded = recorded_status(tx, ident)
    changed = False
    if (
        recorded == Status.SCHEDULED.value
        and row.started_at is None
        and model.start_at is not None
        and model.start_at <= now
        and model.status in (Status.SCHEDULED, Status.RUNNING)
    ):
        at = max(model.start_at, row.applied_at)
        if not tx.claim_once(status_key(ident, _RUNNING, at), now):
            return False
        tx.add_history(HistoryEntry(ident, at, "status", recorded, _RUNNING, row.commit))
        row = replace(row, started_at=at)
        tx.save_automation(row)
        recorded, changed = _RUNNING, True
    if recorded in (_RUNNING, _PAUSED) and model.stop_at is not None and model.stop_at <= now:
        at = max(model.stop_at, row.applied_at, row.started_at or model.stop_at)
        if not tx.claim_once(status_key(ident, _STOPPED, at), now):
            return changed
        tx.add_history(HistoryEntry(ident, at, "status", recorded, _STOPPED, row.commit))
        tx.save_automation(replace(row, stopped_at=at))
        cancel_active(tx, ident, CancelReason.STOPPED, now)
        changed = True
    return changed


def status_key(automation_id: str, value: str, moment: datetime) -> str:
    """The claim_once key of a status moment the scheduler records (once per cluster)."""
    return f"status:{automation_id}:{value}:{moment.isoformat()}"


def recorded_status(tx: ReadTx, automation_id: str) -> str | None:
    """The latest effective status recorded in the history of one automation."""
    latest: HistoryEntry | None = None
    for entry in tx.history(automation_id):  # oldest first: a later entry wins a tie
        if entry.kind == "status" and (latest is None or entry.at >= latest.at):
            latest = entry
    return None if latest is None else str(latest.value)


def cancel_active(tx: WriteTx, automation_id: str, reason: CancelReason, now: datetime) -> int:
    """Cancel every send of an automation not yet handed to a provider; a request in flight
    completes and is recorded, without retries or repeats after it. Returns how many were
    cancelled."""
    return tx.end_automation_sends(automation_id, reason, now)


def bump_revision(tx: WriteTx) -> None:
    """Tell every worker to rebuild its catalog."""
    current = tx.meta(REVISION_META)
    number = int(current) if current is not None and current.isdigit() else 0
    tx.set_meta(REVISION_META, str(number + 1))
