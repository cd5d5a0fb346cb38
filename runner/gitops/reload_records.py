"""The reloader's per-automation record, typed, and the one place that reads and writes it.

Stored as JSON in meta "reload_state:<id>": {"desired_status" (the file's written status;
"deleted" when the file is gone; None when it does not load), "path", "attempted_revision",
"attempted_commit", "applied_revision", "applied_commit", "last_error" (None or {"rule",
"message", "path", "line", "col", "help", "commit", "kind", "at", "findings": [...]}),
"deletion_blocked", "updated_at"}. Data folders written before these records held only meta
"reload_error:<id>" ({"at", "kind", "desired_status", "findings"}); it is still written and is
read when no record exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from runner.core.findings import Finding
from runner.store.base import ReadTx, WriteTx

RELOAD_STATE_META = "reload_state:"
RELOAD_ERROR_META = "reload_error:"


@dataclass(frozen=True)
class FindingRecord:
    """One finding of a refusal as recorded, with the commit that carried it."""

    rule: str | None
    message: str
    path: str | None = None
    line: int | None = None
    col: int | None = None
    help: str | None = None
    commit: str | None = None

    @classmethod
    def of(cls, finding: Finding, commit: str | None) -> FindingRecord:
        """The record of `finding` (its own commit, else the step's)."""
        return cls(
            finding.rule,
            finding.message,
            finding.path,
            finding.line,
            finding.col,
            finding.help,
            finding.commit or commit,
        )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FindingRecord:
        """Read a stored finding (missing keys are None)."""
        return cls(
            raw.get("rule"),
            raw.get("message") or "",
            raw.get("path"),
            raw.get("line"),
            raw.get("col"),
            raw.get("help"),
            raw.get("commit"),
        )


@dataclass(frozen=True)
class LastError:
    """The last refusal of an automation: its first finding, flattened, and all of them."""

    first: FindingRecord
    kind: str | None
    at: str | None  # when this refusal was first recorded
    findings: tuple[FindingRecord, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The stored (and served) form."""
        return {
            **asdict(self.first),
            "kind": self.kind,
            "at": self.at,
            "findings": [asdict(f) for f in self.findings],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LastError:
        """Read the stored form."""
        found = tuple(FindingRecord.from_json(f) for f in raw.get("findings") or ())
        return cls(FindingRecord.from_json(raw), raw.get("kind"), raw.get("at"), found)


@dataclass(frozen=True)
class ReloadState:
    """What the reloader last judged of one automation (see the module docstring)."""

    desired_status: str | None = None
    path: str | None = None
    attempted_revision: str | None = None
    attempted_commit: str | None = None
    applied_revision: str | None = None
    applied_commit: str | None = None
    last_error: LastError | None = None
    deletion_blocked: bool = False
    updated_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored (and served) form."""
        plain = {k: v for k, v in asdict(self).items() if k != "last_error"}
        error = self.last_error.to_json() if self.last_error is not None else None
        return {**plain, "last_error": error}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ReloadState:
        """Read the stored form."""
        error = raw.get("last_error")
        return cls(
            raw.get("desired_status"),
            raw.get("path"),
            raw.get("attempted_revision"),
            raw.get("attempted_commit"),
            raw.get("applied_revision"),
            raw.get("applied_commit"),
            LastError.from_json(error) if error else None,
            bool(raw.get("deletion_blocked")),
            raw.get("updated_at"),
        )

    def same_as(self, other: ReloadState) -> bool:
        """Equal but for the times (nothing new to record)."""
        return _timeless(self) == _timeless(other)


def _timeless(state: ReloadState) -> ReloadState:
    error = state.last_error
    return replace(state, updated_at=None, last_error=error and replace(error, at=None))


def read_state(tx: ReadTx, automation_id: str, *, legacy: bool = True) -> ReloadState | None:
    """The recorded state of one automation, or None; without a record, one made from its
    legacy refusal (unless `legacy` is False)."""
    raw = tx.meta(RELOAD_STATE_META + automation_id)
    if raw:
        return ReloadState.from_json(json.loads(raw))
    if not legacy:
        return None
    old = tx.meta(RELOAD_ERROR_META + automation_id)
    if not old:
        return None
    error = json.loads(old)
    found = error.get("findings") or [{}]
    last = LastError(FindingRecord.from_json(found[0]), error.get("kind"), error.get("at"))
    return ReloadState(
        desired_status=error.get("desired_status"),
        last_error=last,
        deletion_blocked=error.get("kind") == "deleted",
    )


def write_state(tx: WriteTx, automation_id: str, state: ReloadState) -> None:
    """Record the state of one automation, and its refusal in the legacy form (or clear it)."""
    tx.set_meta(RELOAD_STATE_META + automation_id, json.dumps(state.to_json()))
    error = state.last_error
    if error is None:
        tx.delete_meta(RELOAD_ERROR_META + automation_id)
        return
    legacy = {
        "at": state.updated_at,
        "kind": error.kind,
        "desired_status": state.desired_status,
        "findings": [asdict(f) for f in error.findings],
    }
    tx.set_meta(RELOAD_ERROR_META + automation_id, json.dumps(legacy))
