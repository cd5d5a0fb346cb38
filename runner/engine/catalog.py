"""The applied automations as the engine sees them (pure: built from store rows).

Each automation is parsed once from the source the store kept, with its
effective status moments, so the engine can answer "was it running at this
instant?" and "who listens to this event?" without SQL.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from runner.core.loader import load_automation
from runner.core.model import Automation, EmailTrigger, EventTrigger, Status
from runner.core.records import AppliedAutomation, HistoryEntry
from runner.core.version import Version

DELETED = "deleted"
TICK = timedelta(microseconds=1)  # the smallest step between two instants


def version_of(row: AppliedAutomation) -> Version:
    """The applied version as a lifecycle `Version` (from the stored source and templates)."""
    loaded = load_automation(row.path, row.source.encode("utf-8"))
    if loaded.model is None:  # the store only holds versions that validated
        raise ValueError(f"stored source of {row.id} no longer validates: {loaded.findings}")
    return Version.of(loaded, row.templates)


@dataclass(frozen=True)
class Live:
    """One applied automation: its row, model and effective status over time."""

    row: AppliedAutomation
    version: Version
    moments: tuple[datetime, ...] = ()  # when the effective status changed, ascending
    statuses: tuple[str, ...] = ()  # the effective status from each moment on

    @property
    def id(self) -> str:
        """The automation id."""
        return self.row.id

    @property
    def model(self) -> Automation:
        """The applied definition."""
        return self.version.model

    def status_at(self, instant: datetime) -> str | None:
        """The effective status at `instant` (None before the automation was applied)."""
        index = bisect.bisect_right(self.moments, instant) - 1
        return self.statuses[index] if index >= 0 else None

    def running_at(self, instant: datetime) -> bool:
        """Whether triggers were evaluated at `instant`: only while running."""
        return self.status_at(instant) == Status.RUNNING.value

    @property
    def status(self) -> str | None:
        """The latest recorded effective status."""
        return self.statuses[-1] if self.statuses else None


@dataclass
class Catalog:
    """Every applied automation, indexed for matching."""

    by_id: dict[str, Live] = field(default_factory=dict)
    by_event: dict[str, list[Live]] = field(default_factory=dict)
    by_source: dict[str, list[Live]] = field(default_factory=dict)
    by_exit_event: dict[str, list[Live]] = field(default_factory=dict)
    # The store's catalog revision this was built at ("": none written yet; None: built
    # outside the worker, where no reload runs concurrently).
    revision: str | None = None

    @classmethod
    def build(
        cls,
        rows: Iterable[AppliedAutomation],
        changes: Iterable[HistoryEntry],
        previous: Catalog | None = None,
        *,
        revision: str | None = None,
    ) -> Catalog:
        """Index `rows` with the status moments in `changes` (kind "status"), read at the
        store's catalog `revision`.

        Versions of `previous` whose source and templates did not change are reused:
        parsing a thousand stored sources on every reload would dominate it.
        """
        moments: dict[str, list[tuple[datetime, str]]] = {}
        for entry in changes:
            if entry.kind == "status":
                moments.setdefault(entry.automation_id, []).append((entry.at, str(entry.value)))
        catalog = cls(revision=revision)
        for row in rows:
            ordered = sorted(moments.get(row.id, []), key=lambda pair: pair[0])
            known = previous.by_id.get(row.id) if previous is not None else None
            live = Live(
                row,
                known.version
                if known is not None and _same_source(known.row, row)
                else version_of(row),
                tuple(at for at, _ in ordered),
                tuple(status for _, status in ordered),
            )
            catalog._add(live)
        return catalog

    def _add(self, live: Live) -> None:
        self.by_id[live.id] = live
        trigger = live.model.trigger
        if live.row.status != DELETED:
            if isinstance(trigger, EventTrigger):
                self.by_event.setdefault(trigger.event, []).append(live)
            elif isinstance(trigger, EmailTrigger):
                self.by_source.setdefault(trigger.automation, []).append(live)
        for exit_on in live.model.exit_on:
            self.by_exit_event.setdefault(exit_on.event, []).append(live)

    def listens_to_email_event(self, name: str, source_id: str) -> bool:
        """Whether an `email.<action>` event `name` of a message of `source_id` can matter to
        processing: an automation has an email trigger on `source_id` or exits on `name`."""
        return bool(self.by_source.get(source_id) or self.by_exit_event.get(name))

    def listeners_at(self, source_id: str, instant: datetime) -> list[str]:
        """Automations with an email trigger on `source_id` running at `instant`
        (docs/events.md "Email events")."""
        return sorted(
            live.id for live in self.by_source.get(source_id, []) if live.running_at(instant)
        )


def _same_source(old: AppliedAutomation, new: AppliedAutomation) -> bool:
    return (old.source, old.templates, old.path) == (new.source, new.templates, new.path)


def running_intervals(
    live: Live, after: datetime, until: datetime
) -> Iterator[tuple[datetime, datetime | None]]:
    """[start, end) spans in which the automation was running that meet (after, until]."""
    moments = live.moments
    for index, status in enumerate(live.statuses):
        if status != Status.RUNNING.value:
            continue
        start = moments[index]
        end = moments[index + 1] if index + 1 < len(moments) else None
        if start <= until and (end is None or end > after + TICK):
            yield start, end


def ran_during(live: Live, after: datetime, until: datetime) -> bool:
    """Whether the automation was running at some instant of (after, until]."""
    return next(running_intervals(live, after, until), None) is not None
