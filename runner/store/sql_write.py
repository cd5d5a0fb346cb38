"""The part of `WriteTx` written once for both stores: events, automations and small records.

A store's write transaction mixes this in after its own classes, which supply the statement
primitives (`_one`, `_all`, `_run`, `_many`), the event insert and what truly differs
(claims, savepoints, locks, subscriber saves).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from runner.core.records import (
    AppliedAutomation,
    Entry,
    HistoryEntry,
    IncomingEvent,
    StoredEvent,
    normalise_email,
)
from runner.store.errors import EventConflict
from runner.store.rows import dumps, loads, opt_dumps
from runner.store.sql_dashboard import DashboardWrites
from runner.store.sql_fanout import SqlFanOutTx
from runner.store.sql_sends import SqlSendsTx


class SqlWriteTx(DashboardWrites, SqlSendsTx, SqlFanOutTx):
    """Writes inside one transaction, over the dialect's rendered `writes`."""

    def _insert_events(self, events: Sequence[IncomingEvent], received_at: datetime) -> None:
        raise NotImplementedError

    def ingest_group(
        self, calls: Sequence[Sequence[IncomingEvent]], received_at: datetime
    ) -> list[list[str] | EventConflict]:
        """Store the events of several ingest calls at once, each call atomic on its own.

        Every id is looked up at once and the new events are inserted together, so the group
        commit's cost per event stays a few microseconds. A call with a conflicting id gets
        its EventConflict and stores nothing.
        """
        known = self._known_ids({event.id for call in calls for event in call})
        outcomes: list[list[str] | EventConflict] = []
        accepted: list[IncomingEvent] = []
        for call in calls:
            mine: dict[str, str] = {}
            results: list[str] = []
            conflict: EventConflict | None = None
            for event in call:
                seen = known.get(event.id, mine.get(event.id))
                if seen is None:
                    mine[event.id] = event.body_hash
                    results.append("stored")
                elif seen == event.body_hash:
                    results.append("duplicate")
                else:
                    conflict = EventConflict(event.id)
                    break
            if conflict is not None:
                outcomes.append(conflict)
                continue
            known.update(mine)
            accepted.extend(e for e, r in zip(call, results, strict=True) if r == "stored")
            outcomes.append(results)
        if accepted:
            self._insert_events(accepted, received_at)
        return outcomes

    def _known_ids(self, ids: set[str]) -> dict[str, str]:
        known: dict[str, str] = {}
        for batch in self.dialect.batches(sorted(ids)):
            test, args = self.dialect.one_of("id", batch)
            found = self._all(f"SELECT id, body_hash FROM event_ids WHERE {test}", *args)
            known.update((row["id"], row["body_hash"]) for row in found)
        return known

    def _event_rows(
        self, seqs: Sequence[int], events: Sequence[IncomingEvent], received_at: datetime
    ) -> None:
        """Insert `events` with the given seqs, and remember their client ids."""
        write_time = self.dialect.write_time
        when = write_time(received_at)
        self._many(
            self.writes.insert_events,
            [
                (
                    seq,
                    e.id,
                    e.type,
                    normalise_email(e.email),
                    opt_dumps(e.fields),
                    opt_dumps(e.groups),
                    dumps(e.data),
                    None if e.occurred_at is None else write_time(e.occurred_at),
                    when,
                )
                for seq, e in zip(seqs, events, strict=True)
            ],
        )
        self._many(
            self.writes.insert_event_ids,
            [(e.id, e.body_hash, seq, when) for seq, e in zip(seqs, events, strict=True)],
        )

    def unprocessed_events(self, limit: int) -> list[StoredEvent]:
        """Received events the engine has not processed, by seq."""
        event_of = self.dialect.codec.event_of
        return [event_of(r) for r in self._all(self.writes.unprocessed_events, limit)]

    def add_event(
        self,
        type: str,
        email: str,
        data: dict[str, object],
        received_at: datetime,
        *,
        derived_from: int | None = None,
        processed: bool = True,
    ) -> StoredEvent:
        """Store a derived or internal event (no client id)."""
        email = normalise_email(email)
        text = dumps(data)
        row = self._one(
            self.writes.insert_event,
            type,
            email,
            text,
            self.dialect.write_time(received_at),
            derived_from,
            self.dialect.flag(processed),
        )
        assert row is not None
        # Built from what was written rather than read back (RETURNING *): the same values
        # as the row's, without fetching and decoding every column of every derived event.
        return StoredEvent(
            seq=row["seq"],
            id=None,
            type=type,
            email=email,
            fields=None,
            groups=None,
            data={} if text == "{}" else loads(text),
            occurred_at=None,
            received_at=received_at.astimezone(UTC),  # as either store reads it back
            derived_from=derived_from,
        )

    def mark_failed(self, seq: int, error: str) -> None:
        """Mark a received event processed, recording why its processing failed."""
        self._run(self.writes.mark_failed, (error, seq))

    def mark_processed(self, seqs: Sequence[int]) -> None:
        """Mark received events as processed."""
        for batch in self.dialect.batches(seqs):
            test, args = self.dialect.one_of("seq", batch, "bigint")
            self._run(f"UPDATE events SET processed = TRUE WHERE {test}", args)

    def save_automation(self, automation: AppliedAutomation) -> None:
        """Insert or replace the applied version of an automation."""
        write_time = self.dialect.write_time
        started, stopped = automation.started_at, automation.stopped_at
        self._run(
            self.writes.save_automation,
            (
                automation.id,
                automation.revision,
                automation.status,
                automation.source,
                dumps(automation.templates),
                automation.path,
                automation.commit,
                write_time(automation.applied_at),
                None if started is None else write_time(started),
                None if stopped is None else write_time(stopped),
            ),
        )
        # Stats by revision name the commit that carried each revision.
        self.record_revision(
            automation.id, automation.revision, automation.commit, automation.applied_at
        )

    def add_history(self, entry: HistoryEntry) -> None:
        """Record an applied change."""
        self._run(
            self.writes.add_history,
            (
                entry.automation_id,
                self.dialect.write_time(entry.at),
                entry.kind,
                dumps(entry.previous),
                dumps(entry.value),
                entry.commit,
                entry.detail,
            ),
        )

    def record_entries(
        self, automation_id: str, subscriber_ids: Sequence[int], at: datetime
    ) -> None:
        """`record_entry` for many distinct subscribers with one statement."""
        if len(set(subscriber_ids)) != len(subscriber_ids):
            raise ValueError("record_entries() takes each subscriber once")
        when = self.dialect.write_time(at)
        rows = [(automation_id, ident, when, when) for ident in subscriber_ids]
        self._insert_rows(self.writes.record_entries, rows)

    def record_entry(self, automation_id: str, subscriber_id: int, at: datetime) -> Entry:
        """Remember that a subscriber entered an automation at `at`."""
        when = self.dialect.write_time(at)
        row = self._one(self.writes.record_entry, automation_id, subscriber_id, when, when)
        assert row is not None
        return self.dialect.codec.entry_of(row)

    def enter_first(self, automation_id: str, subscriber_id: int, at: datetime) -> bool:
        """Record a first entry; False, with nothing written, when one exists."""
        when = self.dialect.write_time(at)
        return self._run(self.writes.enter_first, (automation_id, subscriber_id, when, when)) == 1

    def claim_once(self, key: str, at: datetime) -> bool:
        """True the first time `key` is claimed (a concurrent claimer waits, then gets False)."""
        return self._run(self.writes.claim_once, (key, self.dialect.write_time(at))) == 1

    def set_meta(self, key: str, value: str) -> None:
        """Set a runner-wide value."""
        self._run(self.writes.set_meta, (key, value))

    def delete_meta(self, key: str) -> bool:
        """Remove a runner-wide value; False when there was none."""
        return self._run(self.writes.delete_meta, (key,)) == 1

    def purge_event_ids(self, before: datetime) -> int:
        """Forget client event ids received before `before` (uses event_ids_by_time)."""
        return self._run(self.writes.purge_event_ids, (self.dialect.write_time(before),))
