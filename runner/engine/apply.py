"""Applying the automation files to the store (SPEC 2.2, 3.6, 6), and every other writer of
status history (scheduled starts, `stop_at` stops): each file version is compared
with the applied one by the lifecycle rules; legal changes are applied, the others refused.

Refused or invalid files leave the last applied version live; every applied change is recorded
in the history with its commit and previous value.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from runner.engine.catalog import DELETED, Catalog, Live, version_of
from runner.findings import Finding, Severity
from runner.lifecycle import Change, check_step
from runner.model import Status
from runner.store.base import ReadTx, WriteTx
from runner.store.records import AppliedAutomation, CancelReason, HistoryEntry, SendStatus
from runner.tree import Tree
from runner.version import Version

REVISION_META = "catalog_revision"
_CANCEL_PAGE = 500
_ACTIVE = (SendStatus.PENDING, SendStatus.CLAIMED)
_RUNNING, _PAUSED, _STOPPED = (Status.RUNNING.value, Status.PAUSED.value, Status.STOPPED.value)


@dataclass
class ApplyReport:
    """What one apply did: (id, what) per applied change, and the refused changes."""

    applied: list[tuple[str, str]] = field(default_factory=list)
    refused: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class _Step:
    tx: WriteTx
    tree: Tree
    now: datetime
    commit: str | None


def apply_files(tx: WriteTx, tree: Tree, now: datetime, commit: str | None) -> ApplyReport:
    """Apply the checked files of `tree` at `now` (a whole state: missing files are deletes)."""
    catalog = Catalog.build(tx.automations(), tx.status_changes())
    if advance_lifecycle(tx, catalog, now):  # judge changes against the moments already due
        catalog = Catalog.build(tx.automations(), tx.status_changes())
    lives = catalog.by_id
    parents = {ident: live.version for ident, live in lives.items() if live.row.status != DELETED}
    retired = {ident for ident, live in lives.items() if live.row.status == DELETED}
    invalid = invalid_files(tree)
    children = {ident: v for ident, v in tree.versions.items() if ident not in invalid}
    for ident in invalid.keys() & parents.keys():
        children[ident] = parents[ident]  # an invalid file keeps the applied version live
    report = ApplyReport()
    step = _Step(tx, tree, now, commit)
    for change in check_step(parents, children, now, retired_ids=retired):
        if change.id in invalid:
            report.refused.append(_invalid_change(change, lives.get(change.id), invalid))
        elif change.blocked:
            report.refused.append(change)
        elif change.kind == "created":
            report.applied.append((change.id, _create(step, children[change.id])))
        elif change.kind == "deleted":
            report.applied.append((change.id, _delete(step, lives[change.id])))
        elif change.kind != "unchanged":
            what = _update(step, lives[change.id], children[change.id], change)
            report.applied.append((change.id, what))
    if report.applied:
        bump_revision(tx)
    return report


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
    change: Change, live: Live | None, invalid: Mapping[str, tuple[Finding, ...]]
) -> Change:
    old_path = live.row.path if live is not None else None
    return replace(
        change,
        kind="modified" if live is not None else "created",
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


def _create(step: _Step, version: Version) -> str:
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
    return f"created as {status.value}"


def _delete(step: _Step, live: Live) -> str:
    row = live.row
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
    return "deleted"


def _update(step: _Step, live: Live, version: Version, change: Change) -> str:
    old = live.row
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
    return ", ".join(what) or "updated"


def _history(
    step: _Step, ident: str, kind: str, previous: Any, value: Any, detail: str | None = None
) -> None:
    entry = HistoryEntry(ident, step.now, kind, previous, value, step.commit, detail)
    step.tx.add_history(entry)


# --- lifecycle moments ------------------------------------------------------------------


def advance_lifecycle(tx: WriteTx, catalog: Catalog, now: datetime) -> bool:
    """Record scheduled starts and `stop_at` stops that have come; True when any was recorded.

    The catalog only preselects; the row and history are read again inside the transaction, so
    two runners never record the same moment twice.
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
        tx.add_history(HistoryEntry(ident, at, "status", recorded, _RUNNING, row.commit))
        row = replace(row, started_at=at)
        tx.save_automation(row)
        recorded, changed = _RUNNING, True
    if recorded in (_RUNNING, _PAUSED) and model.stop_at is not None and model.stop_at <= now:
        at = max(model.stop_at, row.applied_at, row.started_at or model.stop_at)
        tx.add_history(HistoryEntry(ident, at, "status", recorded, _STOPPED, row.commit))
        tx.save_automation(replace(row, stopped_at=at))
        cancel_active(tx, ident, CancelReason.STOPPED, now)
        changed = True
    return changed


def recorded_status(tx: ReadTx, automation_id: str) -> str | None:
    """The latest effective status recorded in the history of one automation."""
    latest: HistoryEntry | None = None
    for entry in tx.history(automation_id):  # oldest first: a later entry wins a tie
        if entry.kind == "status" and (latest is None or entry.at >= latest.at):
            latest = entry
    return None if latest is None else str(latest.value)


def cancel_active(tx: WriteTx, automation_id: str, reason: CancelReason, now: datetime) -> int:
    """Cancel every PENDING and CLAIMED send of an automation; returns how many."""
    total = 0
    while True:
        page = tx.pending_sends(automation_id, _ACTIVE, limit=_CANCEL_PAGE)
        if not page:
            return total
        done = tx.set_status(
            [send.id for send in page],
            SendStatus.CANCELLED,
            now,
            from_statuses=_ACTIVE,
            reason=reason.value,
        )
        total += done
        if done == 0:  # nothing moved: never loop on rows the guard refuses
            return total


def bump_revision(tx: WriteTx) -> None:
    """Tell every worker to rebuild its catalog."""
    current = tx.meta(REVISION_META)
    number = int(current) if current is not None and current.isdigit() else 0
    tx.set_meta(REVISION_META, str(number + 1))
