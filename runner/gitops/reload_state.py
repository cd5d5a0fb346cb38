"""What the reloader records, for the API and metrics (read with `reload_state` and
`reload_summary`), and what one reload did (`ReloadResult`).

- meta "reload_state:<id>": JSON {"desired_status" (the file's written status; "deleted" when the
  file is gone; None when it does not load), "path", "attempted_revision", "attempted_commit",
  "applied_revision", "applied_commit", "last_error" (None or {"rule", "message", "path",
  "line", "col", "help", "commit", "kind", "at", "findings": [...]}), "deletion_blocked",
  "updated_at"}. A revision is the git blob id of the file (hashed with its template texts when
  it has template files); "applied_revision" is the revision of the file version now live.
- meta "reload_error:<id>": the last refusal as before (cleared when a version is accepted).
- meta "reload_summary": JSON {"result", "at", "reason", "successful", "last_success_at",
  "applied", "refused", "counts" (reloads by result), "commit", "error"}.
- meta "applied_commit" (the HEAD applied) and "files_applied_at".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.core.desired import DesiredState
from runner.core.findings import Finding, Severity
from runner.core.lifecycle import Change
from runner.core.records import AppliedAutomation
from runner.core.version import Version
from runner.engine.apply import ApplyPlan, ApplyReport
from runner.engine.catalog import DELETED
from runner.repo.snapshot import git_blob_id
from runner.store.base import ReadTx, WriteTx

FILES_APPLIED_META = "files_applied_at"
RELOAD_ERROR_META = "reload_error:"
RELOAD_STATE_META = "reload_state:"
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


def reload_state(tx: ReadTx, automation_id: str) -> dict[str, Any] | None:
    """The recorded reload state of one automation (see the module docstring), or None."""
    raw = tx.meta(RELOAD_STATE_META + automation_id)
    if raw:
        state: dict[str, Any] = json.loads(raw)
        return state
    legacy = tx.meta(RELOAD_ERROR_META + automation_id)
    if not legacy:
        return None
    error = json.loads(legacy)
    first = (error.get("findings") or [{}])[0]
    return {
        "desired_status": error.get("desired_status"),
        "last_error": {**first, "at": error.get("at"), "kind": error.get("kind")},
        "deletion_blocked": error.get("kind") == "deleted",
    }


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
    """Write the reload state of every judged id whose state changed (and the legacy error)."""
    refused = {change.id: change for change in report.refused}
    accepted = set(report.accepted)
    for change in plan.changes:
        if change.id not in refused and change.id not in accepted:
            continue
        raw = tx.meta(RELOAD_STATE_META + change.id)
        old = json.loads(raw) if raw else None
        state = _state(plan, change, refused.get(change.id), commit, old)
        if old is not None and _comparable(old) == _comparable(state):
            continue
        state["updated_at"] = now.isoformat()
        if state["last_error"] is not None:
            previous_error = (old or {}).get("last_error") or {}
            same = _comparable_error(previous_error) == _comparable_error(state["last_error"])
            state["last_error"]["at"] = previous_error.get("at") if same else now.isoformat()
        tx.set_meta(RELOAD_STATE_META + change.id, json.dumps(state))
        if change.id in refused:
            tx.set_meta(RELOAD_ERROR_META + change.id, json.dumps(_legacy(refused[change.id], now)))
        else:
            tx.delete_meta(RELOAD_ERROR_META + change.id)


def _state(
    plan: ApplyPlan,
    change: Change,
    refusal: Change | None,
    commit: str | None,
    old: Mapping[str, Any] | None,
) -> dict[str, Any]:
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
    old = old or {}
    state: dict[str, Any] = {
        "desired_status": desired,
        "path": path,
        "attempted_revision": attempted,
        "attempted_commit": commit,
        "applied_revision": old.get("applied_revision"),
        "applied_commit": old.get("applied_commit"),
        "last_error": None,
        "deletion_blocked": False,
    }
    if refusal is None:
        state["applied_revision"], state["applied_commit"] = attempted, commit
    else:
        row = plan.rows.get(change.id)
        if state["applied_revision"] is None and row is not None:
            state["applied_revision"] = row_revision(row)
            state["applied_commit"] = row.commit
        state["last_error"] = _error(refusal, commit)
        state["deletion_blocked"] = blocks_delete(refusal.findings)
    return state


def _error(change: Change, commit: str | None) -> dict[str, Any]:
    errors = [f for f in change.findings if f.severity is Severity.ERROR] or list(change.findings)
    found = [_finding(f, commit) for f in errors]
    first = found[0] if found else {"rule": None, "message": "refused"}
    return {**first, "kind": change.kind, "at": None, "findings": found}


def _finding(finding: Finding, commit: str | None) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "message": finding.message,
        "path": finding.path,
        "line": finding.line,
        "col": finding.col,
        "help": finding.help,
        "commit": finding.commit or commit,
    }


def _legacy(change: Change, now: datetime) -> dict[str, Any]:
    """The reload_error:<id> value as runner.server wrote it before reload states."""
    errors = [f for f in change.findings if f.severity is Severity.ERROR] or list(change.findings)
    return {
        "at": now.isoformat(),
        "kind": change.kind,
        "desired_status": change.new_status.value if change.new_status is not None else None,
        "findings": [_finding(f, None) for f in errors],
    }


def _comparable(state: Mapping[str, Any]) -> dict[str, Any]:
    plain = {k: v for k, v in state.items() if k != "updated_at"}
    if plain.get("last_error"):
        plain["last_error"] = _comparable_error(plain["last_error"])
    return plain


def _comparable_error(error: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in error.items() if k != "at"}


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
