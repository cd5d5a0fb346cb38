"""Applying automation files to a real SQLite store (docs/rules.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runner.checking.tree import TreeChecker
from runner.core.clock import FakeClock
from runner.core.records import AppliedAutomation, HistoryEntry, PendingSend, SendStatus, Subscriber
from runner.engine.apply import ApplyReport, apply_files
from runner.engine.catalog import Catalog
from runner.repo.snapshot import MemorySnapshot
from runner.store import open_store
from runner.store.base import ReadTx, WriteTx

T = TypeVar("T")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ALL_STATUSES = tuple(SendStatus)


class Db:
    """A real SQLite store driven synchronously, one transaction per call."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.clock = clock
        self.store = open_store(f"sqlite:///{path}", clock)

    def write(self, work: Callable[[WriteTx], T]) -> T:
        return asyncio.run(self.store.write(work))

    def read(self, work: Callable[[ReadTx], T]) -> T:
        return asyncio.run(self.store.read(work))

    def close(self) -> None:
        asyncio.run(self.store.close())

    def row(self, ident: str) -> AppliedAutomation:
        row = self.read(lambda tx: tx.automation(ident))
        assert row is not None
        return row

    def history(self, ident: str, kind: str | None = None) -> list[HistoryEntry]:
        entries = self.read(lambda tx: tx.history(ident))
        return [entry for entry in entries if kind is None or entry.kind == kind]

    def sends(self, ident: str) -> list[PendingSend]:
        return self.read(lambda tx: tx.pending_sends(ident, ALL_STATUSES, limit=1000))

    def catalog(self) -> Catalog:
        return self.read(lambda tx: Catalog.build(tx.automations(), tx.status_changes()))

    def subscriber(self, email: str, **fields: Any) -> Subscriber:
        groups = set(fields.pop("groups", ()))
        new = Subscriber(None, email, dict(fields), groups, created_at=T0)
        return self.write(lambda tx: tx.save_subscriber(new))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    store = Db(tmp_path / "pw.db", FakeClock(T0))
    yield store
    store.close()


def automation(
    ident: str,
    status: str = "running",
    trigger: str = "{type: api}",
    *,
    extra: str = "",
    subject: str = "Hi",
) -> str:
    """The YAML text of a small valid automation."""
    return (
        f"id: {ident}\nstatus: {status}\n{extra}trigger: {trigger}\n"
        f'email:\n  from: "Shop <news@shop.example>"\n  subject: {subject}\n  text: hello\n'
    )


def files(*texts: str, folder: str = "automations") -> dict[str, str]:
    """Repository paths for automation texts (the id is read from the first line)."""
    return {f"{folder}/{text.split()[1]}.yaml": text for text in texts}


def apply(db: Db, tree_files: dict[str, str], now: datetime, commit: str | None = None) -> Any:
    snapshot = MemorySnapshot({path: text.encode() for path, text in tree_files.items()})
    tree = TreeChecker().check(snapshot, now)
    report: ApplyReport = db.write(lambda tx: apply_files(tx, tree, now, commit))
    return report


def pending(db: Db, ident: str, subscriber: Subscriber, due: datetime) -> PendingSend:
    assert subscriber.id is not None
    send = PendingSend(
        id=f"send-{ident}-{subscriber.id}-{due.timestamp()}",
        automation_id=ident,
        subscriber_id=subscriber.id,
        email=subscriber.email,
        due_at=due,
        status=SendStatus.PENDING,
        trigger_at=due,
        trigger_event={"name": "api", "data": {}},
        created_at=due,
        series_id="series",
    )
    db.write(lambda tx: tx.insert_pending(send))
    return send


def meta(db: Db, key: str) -> str | None:
    return db.read(lambda tx: tx.meta(key))


# --- created ---------------------------------------------------------------------------


def test_created_running_saves_row_source_and_history(db: Db) -> None:
    text = automation("welcome")
    report = apply(db, files(text), T0, commit="c1")
    assert report.applied == [("welcome", "created as running")]
    assert report.refused == []
    row = db.row("welcome")
    assert (row.revision, row.status, row.source, row.path) == (
        1,
        "running",
        text,
        "automations/welcome.yaml",
    )
    assert (row.commit, row.applied_at, row.started_at) == ("c1", T0, T0)
    definition, status = db.history("welcome")
    assert (definition.kind, definition.previous, definition.value["source"]) == (
        "definition",
        None,
        text,
    )
    assert (status.kind, status.previous, status.value, status.at) == (
        "status",
        None,
        "running",
        T0,
    )
    assert status.commit == "c1"
    assert meta(db, "catalog_revision") == "1"
    assert db.catalog().by_id["welcome"].running_at(T0)


def test_created_draft_is_not_started(db: Db) -> None:
    apply(db, files(automation("later", "draft")), T0)
    row = db.row("later")
    assert (row.status, row.started_at) == ("draft", None)
    assert [entry.value for entry in db.history("later", "status")] == ["draft"]
    assert not db.catalog().by_id["later"].running_at(T0 + timedelta(days=1))


def test_templates_are_kept_with_the_definition(db: Db) -> None:
    text = (
        "id: tpl\nstatus: draft\ntrigger: {type: api}\nemail:\n"
        '  from: "Shop <news@shop.example>"\n  subject: Hi\n  html_file: ../templates/a.html\n'
    )
    tree = {"automations/tpl.yaml": text, "templates/a.html": "<p>v1</p>"}
    apply(db, tree, T0)
    assert db.row("tpl").templates == {"html_file": "<p>v1</p>"}
    report = apply(db, {**tree, "templates/a.html": "<p>v2</p>"}, T0 + timedelta(hours=1))
    assert report.applied == [("tpl", "edited")]
    assert db.row("tpl").templates == {"html_file": "<p>v2</p>"}
    edit = db.history("tpl", "definition")[-1]
    assert edit.previous["templates"] == {"html_file": "<p>v1</p>"}
    assert edit.value["templates"] == {"html_file": "<p>v2</p>"}
    assert edit.detail == "email.html"


def test_unchanged_files_are_not_touched(db: Db) -> None:
    tree = files(automation("same"))
    apply(db, tree, T0)
    report = apply(db, tree, T0 + timedelta(hours=1))
    assert report.applied == [] and report.refused == []
    assert db.row("same").revision == 1
    assert meta(db, "catalog_revision") == "1"


# --- edits and transitions --------------------------------------------------------------


def paused(db: Db, ident: str, at: datetime = T0, **options: Any) -> None:
    """Create `ident` running at `at`, then pause it a minute later."""
    apply(db, files(automation(ident, **options)), at)
    apply(db, files(automation(ident, "paused", **options)), at + timedelta(minutes=1))


def test_edit_while_paused_replaces_the_definition(db: Db) -> None:
    paused(db, "promo", subject="Old")
    later = T0 + timedelta(hours=2)
    report = apply(db, files(automation("promo", "paused", subject="New")), later, commit="c2")
    assert report.applied == [("promo", "edited")]
    row = db.row("promo")
    assert row.revision == 3 and "subject: New" in row.source and row.applied_at == later
    edit = db.history("promo", "definition")[-1]
    assert "subject: Old" in edit.previous["source"]
    assert "subject: New" in edit.value["source"]
    assert (edit.detail, edit.commit, edit.at) == ("email.subject", "c2", later)


def test_running_edit_is_refused_and_the_old_version_stays(db: Db) -> None:
    apply(db, files(automation("promo", subject="Old")), T0)
    report = apply(db, files(automation("promo", subject="New")), T0 + timedelta(hours=1))
    assert report.applied == []
    [refused] = report.refused
    assert refused.id == "promo"
    assert [finding.rule for finding in refused.findings] == ["edit-not-allowed"]
    row = db.row("promo")
    assert row.revision == 1 and "subject: Old" in row.source
    assert len(db.history("promo")) == 2
    assert meta(db, "catalog_revision") == "1"


def test_pause_records_previous_status_and_keeps_sends(db: Db) -> None:
    apply(db, files(automation("promo")), T0)
    alice = db.subscriber("alice@example.com")
    send = pending(db, "promo", alice, T0 + timedelta(days=1))
    paused_at = T0 + timedelta(hours=3)
    report = apply(db, files(automation("promo", "paused")), paused_at, commit="c3")
    assert report.applied == [("promo", "paused")]
    entry = db.history("promo", "status")[-1]
    assert (entry.previous, entry.value, entry.at, entry.commit) == (
        "running",
        "paused",
        paused_at,
        "c3",
    )
    assert [s.status for s in db.sends("promo")] == [SendStatus.PENDING]
    assert db.sends("promo")[0].id == send.id
    live = db.catalog().by_id["promo"]
    assert live.running_at(paused_at - timedelta(seconds=1))
    assert not live.running_at(paused_at)


def test_restart_with_edit_after_pause(db: Db) -> None:
    apply(db, files(automation("promo", subject="Old")), T0)
    apply(db, files(automation("promo", "paused", subject="Old")), T0 + timedelta(hours=1))
    restart = T0 + timedelta(hours=2)
    report = apply(db, files(automation("promo", subject="New")), restart)
    assert report.applied == [("promo", "edited, running")]
    row = db.row("promo")
    assert row.started_at == T0 and "subject: New" in row.source
    assert [(e.previous, e.value) for e in db.history("promo", "status")] == [
        (None, "running"),
        ("running", "paused"),
        ("paused", "running"),
    ]
    assert db.catalog().by_id["promo"].running_at(restart)


def test_stop_cancels_every_active_send(db: Db) -> None:
    apply(db, files(automation("promo")), T0)
    alice = db.subscriber("alice@example.com")
    bob = db.subscriber("bob@example.com")
    pending(db, "promo", alice, T0 + timedelta(days=1))
    pending(db, "promo", bob, T0 + timedelta(days=2))
    stop = T0 + timedelta(hours=5)
    report = apply(db, files(automation("promo", "stopped")), stop)
    assert report.applied == [("promo", "stopped")]
    sends = db.sends("promo")
    assert [(s.status, s.reason) for s in sends] == [(SendStatus.CANCELLED, "stopped")] * 2
    row = db.row("promo")
    assert (row.status, row.stopped_at) == ("stopped", stop)
    entry = db.history("promo", "status")[-1]
    assert (entry.previous, entry.value) == ("running", "stopped")


def test_delete_cancels_sends_and_the_id_is_never_reused(db: Db) -> None:
    paused(db, "old")
    alice = db.subscriber("alice@example.com")
    pending(db, "old", alice, T0 + timedelta(days=1))
    gone = T0 + timedelta(hours=1)
    report = apply(db, {}, gone, commit="c9")
    assert report.applied == [("old", "deleted")]
    row = db.row("old")
    assert (row.status, row.applied_at, row.commit) == ("deleted", gone, "c9")
    assert "id: old" in row.source  # the last definition is kept
    assert [(s.status, s.reason) for s in db.sends("old")] == [(SendStatus.CANCELLED, "deleted")]
    entry = db.history("old", "status")[-1]
    assert (entry.previous, entry.value, entry.at) == ("paused", "deleted", gone)
    again = apply(db, files(automation("old", "draft")), gone + timedelta(hours=1))
    assert again.applied == []
    assert [f.rule for f in again.refused[0].findings] == ["id-reused"]
    assert db.row("old").status == "deleted"


def test_deleting_a_running_automation_is_refused(db: Db) -> None:
    apply(db, files(automation("live")), T0)
    report = apply(db, {}, T0 + timedelta(hours=1))
    assert report.applied == []
    assert [f.rule for f in report.refused[0].findings] == ["delete-running"]
    assert db.row("live").status == "running"


def test_invalid_file_is_refused_and_the_applied_version_stays(db: Db) -> None:
    paused(db, "promo")
    broken = {"automations/promo.yaml": "id: promo\nstatus: paused\ntrigger: {type: nope}\n"}
    report = apply(db, broken, T0 + timedelta(hours=1))
    assert report.applied == []
    [refused] = report.refused
    assert refused.id == "promo" and refused.blocked
    assert db.row("promo").status == "paused"
    assert db.row("promo").revision == 2


def test_moved_file_updates_the_path_without_a_definition_entry(db: Db) -> None:
    text = automation("promo")
    apply(db, files(text), T0)
    report = apply(db, files(text, folder="automations/growth"), T0 + timedelta(hours=1))
    assert report.applied == [("promo", "moved")]
    row = db.row("promo")
    assert (row.path, row.revision) == ("automations/growth/promo.yaml", 2)
    assert len(db.history("promo", "definition")) == 1


def test_metadata_changes_apply_while_running(db: Db) -> None:
    apply(db, files(automation("promo")), T0)
    named = automation("promo", extra="name: Promo\n")
    report = apply(db, files(named), T0 + timedelta(hours=1))
    assert report.applied == [("promo", "metadata")]
    assert "name: Promo" in db.row("promo").source
    assert len(db.history("promo", "definition")) == 1


# --- scheduled starts through the applier ------------------------------------------------


def test_scheduled_whose_start_passed_is_recorded_scheduled_then_started(db: Db) -> None:
    text = automation("soon", "scheduled", extra="start_at: 2026-03-01T00:00:00Z\n")
    apply(db, files(text), T0)
    assert [e.value for e in db.history("soon", "status")] == ["scheduled"]
    assert db.row("soon").started_at is None
    # The next apply records the start first (at the time the version was applied).
    apply(db, files(text), T0 + timedelta(hours=1))
    statuses = db.history("soon", "status")
    assert [(e.value, e.at) for e in statuses] == [("scheduled", T0), ("running", T0)]
    assert db.row("soon").started_at == T0


def test_cancel_a_scheduled_automation_back_to_draft(db: Db) -> None:
    text = automation("later", "scheduled", extra="start_at: 2026-06-01T00:00:00Z\n")
    apply(db, files(text), T0)
    report = apply(db, files(automation("later", "draft")), T0 + timedelta(hours=1))
    assert report.applied == [("later", "times changed, draft")]
    assert [e.value for e in db.history("later", "status")] == ["scheduled", "draft"]
