"""The status history the runner writes besides applying files: scheduled starts and `stop_at`
stops as their moments come (once per cluster), the latest recorded status, cancelling an
automation's sends, and the catalog revision that tells every worker to rebuild."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from runner.core.model import Status
from runner.core.records import CancelReason, HistoryEntry
from runner.engine.catalog import DELETED, Catalog, version_of
from runner.store.base import ReadTx, WriteTx

REVISION_META = "catalog_revision"
_RUNNING, _PAUSED, _STOPPED = (Status.RUNNING.value, Status.PAUSED.value, Status.STOPPED.value)


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
        changed = advance_one(tx, ident, now) or changed
    if changed:
        bump_revision(tx)
    return changed


def advance_one(tx: WriteTx, ident: str, now: datetime) -> bool:
    """Record the start and the stop of one automation that have come; True when any was."""
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
