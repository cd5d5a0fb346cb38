"""`WriteTx` over the writer's SQLite connection; state changes of sends are guarded in SQL."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from runner.core.records import (
    AppliedAutomation,
    Entry,
    HistoryEntry,
    IncomingEvent,
    Message,
    MessageEvent,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
    normalise_email,
)
from runner.store import sqlite_rows as rows
from runner.store.errors import EventConflict, StoreError, TransactionAborted
from runner.store.rows import SUBSCRIBER_COLUMNS
from runner.store.sqlite_claims import SqliteClaimsTx
from runner.store.sqlite_faults import is_store_fault, unavailable
from runner.store.sqlite_people import PeopleWrites
from runner.store.sqlite_rows import marks

_CHUNK = 500  # ids per IN list, well under SQLite's bound-variable limit

_INSERT_EVENT = """
INSERT INTO events (client_id, type, email, fields, groups, data, occurred_at, received_at,
                    derived_from, processed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *
"""

# Savepoint names: unique within the process, so nested scopes never share one.
_SAVEPOINTS = itertools.count(1)


class SqliteWriteTx(SqliteClaimsTx, PeopleWrites):
    """Reads and writes inside one `BEGIN IMMEDIATE` transaction of the writer thread."""

    def ingest_group(
        self, calls: Sequence[Sequence[IncomingEvent]], received_at: datetime
    ) -> list[list[str] | EventConflict]:
        """Store the events of several ingest calls at once, each call atomic on its own.

        Every id is looked up in one query and the new events are inserted with
        `executemany`: the group commit's cost per event stays a few microseconds.
        A call with a conflicting id gets its EventConflict and stores nothing.
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
        self._insert_events(accepted, received_at)
        return outcomes

    def _known_ids(self, ids: set[str]) -> dict[str, str]:
        known: dict[str, str] = {}
        ordered = sorted(ids)
        for start in range(0, len(ordered), 500):  # SQLite's host-parameter limit
            chunk = ordered[start : start + 500]
            found = self._all(
                f"SELECT id, body_hash FROM event_ids WHERE id IN ({', '.join('?' * len(chunk))})",
                *chunk,
            )
            known.update((row["id"], row["body_hash"]) for row in found)
        return known

    def _insert_events(self, events: Sequence[IncomingEvent], received_at: datetime) -> None:
        if not events:
            return
        # The writer holds the database (BEGIN IMMEDIATE), so the next sequence numbers
        # are ours to assign; AUTOINCREMENT keeps them above any ever used.
        row = self._one(
            "SELECT MAX(IFNULL((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
            " IFNULL((SELECT MAX(seq) FROM events), 0)) AS last"
        )
        first = (row["last"] if row is not None else 0) + 1
        when = rows.time_text(received_at)
        self.db.executemany(
            "INSERT INTO events (seq, client_id, type, email, fields, groups, data, occurred_at,"
            " received_at, derived_from, processed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0)",
            [
                (
                    first + n,
                    e.id,
                    e.type,
                    normalise_email(e.email),
                    rows.opt_dumps(e.fields),
                    rows.opt_dumps(e.groups),
                    rows.dumps(e.data),
                    rows.opt_time_text(e.occurred_at),
                    when,
                )
                for n, e in enumerate(events)
            ],
        )
        self.db.executemany(
            "INSERT INTO event_ids (id, body_hash, seq, received_at) VALUES (?, ?, ?, ?)",
            [(e.id, e.body_hash, first + n, when) for n, e in enumerate(events)],
        )

    def unprocessed_events(self, limit: int) -> list[StoredEvent]:
        """Received events the engine has not processed, by seq."""
        found = self._all("SELECT * FROM events WHERE processed = 0 ORDER BY seq LIMIT ?", limit)
        return [rows.event_of(r) for r in found]

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
        row = self._one(
            _INSERT_EVENT,
            None,
            type,
            normalise_email(email),
            None,
            None,
            rows.dumps(data),
            None,
            rows.time_text(received_at),
            derived_from,
            int(processed),
        )
        assert row is not None
        return rows.event_of(row)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the block's writes when it raises (the exception goes on); keep them otherwise."""
        name = f"pw_savepoint_{next(_SAVEPOINTS)}"
        self.db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException as error:
            # Some errors (disk full, I/O) make SQLite end the whole transaction; statements
            # run after that would autocommit one by one, so the caller must stop.
            if not self.db.in_transaction:
                raise TransactionAborted(f"the transaction was lost: {error}") from error
            if is_store_fault(error):  # the disk or the file failed, not this block's data
                raise unavailable(error) from error
            try:
                self.db.execute(f"ROLLBACK TO {name}")
                self.db.execute(f"RELEASE {name}")
            except sqlite3.Error as failed:
                raise TransactionAborted(f"cannot roll back to a savepoint: {failed}") from error
            raise
        self.db.execute(f"RELEASE {name}")

    def mark_failed(self, seq: int, error: str) -> None:
        """Mark a received event processed, recording why its processing failed."""
        self.db.execute("UPDATE events SET processed = 1, error = ? WHERE seq = ?", (error, seq))

    def mark_processed(self, seqs: Sequence[int]) -> None:
        """Mark received events as processed."""
        for start in range(0, len(seqs), _CHUNK):
            chunk = list(seqs[start : start + _CHUNK])
            self.db.execute(
                f"UPDATE events SET processed = 1 WHERE seq IN ({marks(len(chunk))})", chunk
            )

    def save_subscriber(self, subscriber: Subscriber) -> Subscriber:
        """Insert (id None) or update a subscriber; returns it with its id and normalised email."""
        email = normalise_email(subscriber.email)
        values = rows.subscriber_values(subscriber, email)
        try:
            if subscriber.id is None:
                row = self._one(
                    f"INSERT INTO subscribers ({SUBSCRIBER_COLUMNS})"
                    f" VALUES ({marks(len(values))}) RETURNING id",
                    *values,
                )
                assert row is not None
                return dataclasses.replace(subscriber, id=row["id"], email=email)
            changed = self.db.execute(
                f"UPDATE subscribers SET ({SUBSCRIBER_COLUMNS}) = ({marks(len(values))})"
                " WHERE id = ?",
                (*values, subscriber.id),
            ).rowcount
        except sqlite3.IntegrityError as error:
            raise StoreError(f"subscriber {email!r} cannot be saved: {error}") from None
        if changed != 1:
            raise StoreError(f"subscriber {subscriber.id} does not exist")
        return dataclasses.replace(subscriber, email=email)

    def save_automation(self, automation: AppliedAutomation) -> None:
        """Insert or replace the applied version of an automation."""
        self.db.execute(
            "INSERT INTO automations (id, revision, status, source, templates, path, commit_sha,"
            " applied_at, started_at, stopped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET revision = excluded.revision,"
            " status = excluded.status, source = excluded.source, templates = excluded.templates,"
            " path = excluded.path, commit_sha = excluded.commit_sha,"
            " applied_at = excluded.applied_at, started_at = excluded.started_at,"
            " stopped_at = excluded.stopped_at",
            (
                automation.id,
                automation.revision,
                automation.status,
                automation.source,
                rows.dumps(automation.templates),
                automation.path,
                automation.commit,
                rows.time_text(automation.applied_at),
                rows.opt_time_text(automation.started_at),
                rows.opt_time_text(automation.stopped_at),
            ),
        )

    def add_history(self, entry: HistoryEntry) -> None:
        """Record an applied change."""
        self.db.execute(
            "INSERT INTO history (automation_id, at, kind, previous, value, commit_sha, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.automation_id,
                rows.time_text(entry.at),
                entry.kind,
                rows.dumps(entry.previous),
                rows.dumps(entry.value),
                entry.commit,
                entry.detail,
            ),
        )

    def record_entry(self, automation_id: str, subscriber_id: int, at: datetime) -> Entry:
        """Remember that a subscriber entered an automation at `at`."""
        row = self._one(
            "INSERT INTO entries (automation_id, subscriber_id, first_at, last_at, count)"
            " VALUES (?, ?, ?, ?, 1) ON CONFLICT (automation_id, subscriber_id)"
            " DO UPDATE SET last_at = excluded.last_at, count = count + 1 RETURNING *",
            automation_id,
            subscriber_id,
            rows.time_text(at),
            rows.time_text(at),
        )
        assert row is not None
        return rows.entry_of(row)

    def insert_pending(self, send: PendingSend) -> None:
        """Store a new pending send; inserting an id again changes nothing (safe retries)."""
        values = rows.send_values(send)
        self.db.execute(
            f"INSERT INTO pending_sends VALUES ({marks(len(values))}) ON CONFLICT (id) DO NOTHING",
            values,
        )

    def set_status(
        self,
        send_ids: Sequence[str],
        to: SendStatus,
        now: datetime,
        *,
        from_statuses: Collection[SendStatus],
        reason: str | None = None,
    ) -> int:
        """Move sends to `to` only from `from_statuses` (guarded in SQL); returns rows changed."""
        if to is SendStatus.CLAIMED:
            raise ValueError("sends are claimed with claim_due, which sets a lease")
        origins = [SendStatus(s).value for s in from_statuses]
        if not origins:
            return 0
        changed = 0
        for start in range(0, len(send_ids), _CHUNK):
            chunk = list(send_ids[start : start + _CHUNK])
            changed += self.db.execute(
                "UPDATE pending_sends SET status = ?, reason = ?, updated_at = ?,"
                " lease_token = NULL, lease_until = NULL"
                f" WHERE id IN ({marks(len(chunk))}) AND status IN ({marks(len(origins))})",
                (to.value, reason, rows.time_text(now), *chunk, *origins),
            ).rowcount
        return changed

    def reschedule(
        self, send_id: str, due_at: datetime, now: datetime, *, token: str | None = None
    ) -> bool:
        """Set a PENDING send's due time; with `token`, also return a held claim to PENDING."""
        if token is None:
            sql = (
                "UPDATE pending_sends SET due_at = ?, updated_at = ?"
                " WHERE id = ? AND status = 'pending'"
            )
            args: tuple[object, ...] = (rows.time_text(due_at), rows.time_text(now), send_id)
        else:
            sql = (
                "UPDATE pending_sends SET due_at = ?, updated_at = ?, status = 'pending',"
                " lease_token = NULL, lease_until = NULL"
                " WHERE id = ? AND status = 'claimed' AND lease_token = ?"
            )
            args = (rows.time_text(due_at), rows.time_text(now), send_id, token)
        return self.db.execute(sql, args).rowcount == 1

    def send_now(self, send_id: str, now: datetime) -> bool:
        """Make a PENDING send due at `now`, skipping its send window."""
        when = rows.time_text(now)
        return (
            self.db.execute(
                "UPDATE pending_sends SET due_at = ?, updated_at = ?, skip_window = 1"
                " WHERE id = ? AND status = 'pending'",
                (when, when, send_id),
            ).rowcount
            == 1
        )

    def insert_message(self, message: Message) -> None:
        """Store a message handed to a provider; inserting an id again changes nothing."""
        values = rows.message_values(message)
        self.db.execute(
            f"INSERT INTO messages VALUES ({marks(len(values))}) ON CONFLICT (id) DO NOTHING",
            values,
        )

    def set_message_status(self, message_id: str, status: str) -> None:
        """Mark a message bounced or failed."""
        self.db.execute("UPDATE messages SET status = ? WHERE id = ?", (status, message_id))

    def insert_message_event(self, event: MessageEvent) -> bool:
        """Store a provider event; False when its provider event id was seen before."""
        try:
            cursor = self.db.execute(
                "INSERT INTO message_events (provider, provider_event_id, message_id, type,"
                " occurred_at, received_at, url, bounce) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, provider_event_id) DO NOTHING",
                (
                    event.provider,
                    event.provider_event_id,
                    event.message_id,
                    event.type,
                    rows.time_text(event.occurred_at),
                    rows.time_text(event.received_at),
                    event.url,
                    event.bounce,
                ),
            )
        except sqlite3.IntegrityError:
            raise StoreError(f"message {event.message_id!r} is not in the store") from None
        return cursor.rowcount == 1

    def claim_once(self, key: str, at: datetime) -> bool:
        """True the first time `key` is claimed."""
        return (
            self.db.execute(
                "INSERT INTO once (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, rows.time_text(at)),
            ).rowcount
            == 1
        )

    def purge_claims(self, prefix: str, before: datetime) -> int:
        """Forget claims of `prefix` older than `before`."""
        return self.db.execute(
            "DELETE FROM once WHERE substr(key, 1, ?) = ? AND at < ?",
            (len(prefix), prefix, rows.time_text(before)),
        ).rowcount

    def lock_lifecycle(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def lock_engine(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this the only writer."""

    def try_lock_engine(self) -> bool:
        """Always True: BEGIN IMMEDIATE already made this the only writer."""
        return True

    def set_meta(self, key: str, value: str) -> None:
        """Set a runner-wide value."""
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_meta(self, key: str) -> bool:
        """Remove a runner-wide value; False when there was none."""
        return self.db.execute("DELETE FROM meta WHERE key = ?", (key,)).rowcount == 1

    def purge_event_ids(self, before: datetime) -> int:
        """Forget client event ids received before `before` (uses event_ids_by_time)."""
        return self.db.execute(
            "DELETE FROM event_ids WHERE received_at < ?", (rows.time_text(before),)
        ).rowcount
