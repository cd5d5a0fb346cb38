"""What the reloader records, for the API and metrics (read with
`reload_records.read_state` and `reload_summary`), and what one reload did (`ReloadResult`).

- meta "reload_state:<id>" (and the older "reload_error:<id>"): a `ReloadState` per automation,
  read and written by reload_records.py. A revision is the git blob id of the file (hashed with
  its template texts when it has template files); "applied_revision" is the revision of the
  file version now live.
- meta "reload_summary": JSON {"result", "at", "reason", "successful", "last_success_at",
  "applied", "refused", "counts" (reloads by result), "commit", "error"}.
- meta "applied_commit" (the HEAD applied) and "files_applied_at".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from runner.core.desired import DesiredState
from runner.core.findings import Finding, Severity
from runner.core.lifecycle import Change
from runner.core.records import AppliedAutomation
from runner.core.version import Version
from runner.engine.apply import ApplyPlan, ApplyReport
from runner.engine.catalog import DELETED
from runner.gitops.reload_records import (
    FindingRecord,
    LastError,
    ReloadState,
    read_state,
    write_state,
)
from runner.repo.snapshot import git_blob_id
from runner.store.base import ReadTx, WriteTx

FILES_APPLIED_META = "files_applied_at"
RELOAD_SUMMARY_META = "reload_summary"
APPLIED_COMMIT_META = "applied_commit"
RESULTS = ("applied", "partial", "failed", "refused_mass_delete")


# --- what a reload did ------------------------------------------------------------------


@dataclass
class ReloadResult:
    """One reload: (id, what, commit) per applied change, (id, findings, commit) per refusal."""

    result: str = "applied"  # one of RESULTS
    applied: list[tuple[str, str, str | None]] = field(default_factory=list)
    refused: list[tuple[str, tuple[Finding, ...], str | None]] = field(default_factory=list)
    at: datetime | None = None
    reason: str = "watch"
    commits: list[str | None] = field(default_factory=list)  # the steps applied, in order
    deletion_blocked: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def successful(self) -> bool:
        """Whether the files on disk are now what is live (nothing refused or failed)."""
        return self.result == "applied"

    @property
    def applied_count(self) -> int:
        """Applied changes."""
        return len(self.applied)

    @property
    def refused_count(self) -> int:
        """Refused changes."""
        return len(self.refused)


# --- reading the recorded state (for the API and metrics) -------------------------------


def reload_summary(tx: ReadTx) -> dict[str, Any]:
    """The last reload: result, time, successful flag, last success time and counts by result."""
    raw = tx.meta(RELOAD_SUMMARY_META)
    if raw:
        summary: dict[str, Any] = json.loads(raw)
        return summary
    return {
        "result": None,
        "at": None,
        "successful": None,
        "last_success_at": None,
        "applied": 0,
        "refused": 0,
        "counts": dict.fromkeys(RESULTS, 0),
    }


# --- per-automation state -----------------------------------------------------------------


def record_states(
    tx: WriteTx, plan: ApplyPlan, report: ApplyReport, commit: str | None, now: datetime
) -> None:
    """Write the reload state of every judged id whose state changed."""
    refused = {change.id: change for change in report.refused}
    accepted = set(report.accepted)
    for change in plan.changes:
        if change.id not in refused and change.id not in accepted:
            continue
        old = read_state(tx, change.id, legacy=False)
        state = _state(plan, change, refused.get(change.id), commit, old)
        if old is not None and old.same_as(state):
            continue
        error = state.last_error
        if error is not None:
            previous = old.last_error if old is not None else None
            same = previous is not None and replace(previous, at=None) == error
            error = replace(error, at=previous.at if same and previous else now.isoformat())
        write_state(tx, change.id, replace(state, last_error=error, updated_at=now.isoformat()))


def _state(
    plan: ApplyPlan,
    change: Change,
    refusal: Change | None,
    commit: str | None,
    old: ReloadState | None,
) -> ReloadState:
    tree = plan.tree
    path = change.new_path if change.kind != "deleted" else None
    if path is None and change.id in plan.invalid and plan.invalid[change.id]:
        path = plan.invalid[change.id][0].path
    attempted = _file_revision(tree, path, plan.children.get(change.id)) if path else None
    if change.kind == "deleted":
        desired: str | None = DELETED
    elif change.id in plan.invalid:
        desired = None
    else:
        desired = change.new_status.value if change.new_status is not None else None
    state = ReloadState(desired, path, attempted, commit)
    if refusal is None:
        return replace(state, applied_revision=attempted, applied_commit=commit)
    applied_revision = old.applied_revision if old is not None else None
    applied_commit = old.applied_commit if old is not None else None
    row = plan.rows.get(change.id)
    if applied_revision is None and row is not None:
        applied_revision, applied_commit = row_revision(row), row.commit
    return replace(
        state,
        applied_revision=applied_revision,
        applied_commit=applied_commit,
        last_error=_error(refusal, commit),
        deletion_blocked=blocks_delete(refusal.findings),
    )


def _error(change: Change, commit: str | None) -> LastError:
    errors = [f for f in change.findings if f.severity is Severity.ERROR] or list(change.findings)
    found = tuple(FindingRecord.of(f, commit) for f in errors)
    first = found[0] if found else FindingRecord(None, "refused")
    return LastError(first, change.kind, None, found)


def blocks_delete(found: Iterable[Finding]) -> bool:
    """Whether a refusal keeps a running automation from being deleted."""
    return any(f.rule == "delete-running" for f in found)


def revision(source: bytes, templates: Mapping[str, str]) -> str:
    """The revision of a file version: its blob id, hashed with its template texts if any."""
    blob = git_blob_id(source)
    if not templates:
        return blob
    parts = [blob, *(f"{k}={git_blob_id(v.encode())}" for k, v in sorted(templates.items()))]
    return hashlib.sha1("\n".join(parts).encode(), usedforsecurity=False).hexdigest()


def row_revision(row: AppliedAutomation) -> str:
    """The revision of the applied version of a row."""
    return revision(row.source.encode("utf-8"), row.templates)


def _file_revision(tree: DesiredState, path: str, version: Version | None) -> str | None:
    content = tree.read(path)
    if content is None:
        return None
    templates = version.templates if version is not None and version.path == path else {}
    return revision(content, templates)


def record_summary(tx: WriteTx, result: ReloadResult, head: str | None) -> None:
    """Record the last reload and count it by result."""
    summary = reload_summary(tx)
    counts = {**dict.fromkeys(RESULTS, 0), **summary.get("counts", {})}
    counts[result.result] = counts.get(result.result, 0) + 1
    at = result.at.isoformat() if result.at is not None else None
    summary = {
        "result": result.result,
        "at": at,
        "reason": result.reason,
        "successful": result.successful,
        "last_success_at": at if result.successful else summary.get("last_success_at"),
        "applied": result.applied_count,
        "refused": result.refused_count,
        "deletion_blocked": result.deletion_blocked,
        "counts": counts,
        "commit": head,
        "error": result.error,
    }
    tx.set_meta(RELOAD_SUMMARY_META, json.dumps(summary))
