"""The reloader's per-automation record: typed, read and written in one place, and readable
from what older data folders hold (runner/gitops/reload_records.py), on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from runner.core.clock import FakeClock
from runner.gitops.reload_records import (
    FindingRecord,
    LastError,
    ReloadState,
    read_state,
    write_state,
)
from runner.store import open_store
from runner.store.base import WriteTx

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FINDING = FindingRecord("edit-not-allowed", "no edits while running", "automations/a.yaml", 3, 1)
REFUSED = ReloadState(
    desired_status="running",
    path="automations/a.yaml",
    attempted_revision="b" * 40,
    attempted_commit="c" * 40,
    applied_revision="a" * 40,
    last_error=LastError(FINDING, "modified", T0.isoformat(), (FINDING,)),
    updated_at=T0.isoformat(),
)


Read = tuple[ReloadState | None, ReloadState | None, str | None, str | None]


def in_store(tmp_path: Path, setup: dict[str, str], state: ReloadState | None = None) -> Read:
    """Write `setup` meta values (and `state` for id a); what read_state then answers, and the
    raw meta values."""
    store = open_store(f"sqlite:///{tmp_path / 'pw.db'}", FakeClock(T0))

    def write(tx: WriteTx) -> None:
        for key, value in setup.items():
            tx.set_meta(key, value)
        if state is not None:
            write_state(tx, "a", state)

    async def main() -> Read:
        try:
            await store.write(write)
            read: Read = await store.read(
                lambda tx: (
                    read_state(tx, "a"),
                    read_state(tx, "a", legacy=False),
                    tx.meta("reload_state:a"),
                    tx.meta("reload_error:a"),
                )
            )
            return read
        finally:
            await store.close()

    return asyncio.run(main())


def test_a_state_is_written_as_the_documented_json_and_read_back_equal(tmp_path: Path) -> None:
    read, _, raw, legacy = in_store(tmp_path, {}, REFUSED)
    assert read == REFUSED and raw is not None and legacy is not None
    stored = json.loads(raw)
    assert stored["last_error"]["rule"] == "edit-not-allowed"
    assert stored["last_error"]["findings"][0]["line"] == 3
    assert set(stored) == {
        "desired_status",
        "path",
        "attempted_revision",
        "attempted_commit",
        "applied_revision",
        "applied_commit",
        "last_error",
        "deletion_blocked",
        "updated_at",
    }
    assert json.loads(legacy)["kind"] == "modified"


def test_an_accepted_state_clears_the_legacy_refusal(tmp_path: Path) -> None:
    old = {"reload_error:a": json.dumps({"at": T0.isoformat(), "kind": "modified"})}
    read, _, _, legacy = in_store(tmp_path, old, ReloadState("paused"))
    assert (read, legacy) == (ReloadState("paused"), None)


def test_a_data_folder_with_only_the_legacy_refusal_reads_as_a_state(tmp_path: Path) -> None:
    legacy = {
        "at": T0.isoformat(),
        "kind": "deleted",
        "desired_status": None,
        "findings": [{"rule": "delete-running", "message": "pause it first", "line": 1}],
    }
    read, strict, _, _ = in_store(tmp_path, {"reload_error:a": json.dumps(legacy)})
    assert strict is None and read is not None and read.last_error is not None
    assert read.deletion_blocked and read.last_error.first.rule == "delete-running"
    assert read.last_error.at == T0.isoformat() and read.last_error.first.line == 1


def test_an_older_record_without_some_keys_still_reads(tmp_path: Path) -> None:
    older = {"desired_status": "draft", "last_error": {"rule": "yaml-syntax", "message": "bad"}}
    read, _, _, _ = in_store(tmp_path, {"reload_state:a": json.dumps(older)})
    assert read is not None
    assert read.desired_status == "draft" and not read.deletion_blocked
    assert read.last_error == LastError(FindingRecord("yaml-syntax", "bad"), None, None)
    assert read.to_json()["last_error"]["findings"] == []
