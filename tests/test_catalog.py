"""The engine's catalog: gating by status moments, and versions reused across rebuilds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from runner.core.records import AppliedAutomation, HistoryEntry
from runner.engine.catalog import Catalog

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

SOURCE = """\
id: welcome
status: running
trigger: {type: event, event: subscriber.added}
email:
  from: news@shop.test
  subject: Hello
  text: Hi
"""


def row(source: str = SOURCE, revision: int = 1) -> AppliedAutomation:
    return AppliedAutomation(
        id="welcome",
        revision=revision,
        status="running",
        source=source,
        templates={},
        path="automations/welcome.yaml",
        commit=None,
        applied_at=T0,
        started_at=T0,
        stopped_at=None,
    )


def moments() -> list[HistoryEntry]:
    return [
        HistoryEntry("welcome", T0, "status", None, "running"),
        HistoryEntry("welcome", T0 + timedelta(hours=1), "status", "running", "paused"),
    ]


def test_running_at_follows_the_status_moments() -> None:
    live = Catalog.build([row()], moments()).by_id["welcome"]
    assert not live.running_at(T0 - timedelta(seconds=1))
    assert live.running_at(T0)
    assert not live.running_at(T0 + timedelta(hours=1))
    assert live.status == "paused"


def test_an_unchanged_version_is_reused_and_a_changed_one_parsed_again() -> None:
    first = Catalog.build([row()], moments())
    again = Catalog.build([dataclasses.replace(row(), revision=2)], moments(), first)
    assert again.by_id["welcome"].version is first.by_id["welcome"].version
    edited = Catalog.build([row(SOURCE.replace("Hello", "Hi there"), 3)], moments(), again)
    assert edited.by_id["welcome"].version is not first.by_id["welcome"].version
    assert edited.by_id["welcome"].model.email.subject == "Hi there"
