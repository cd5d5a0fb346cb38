"""`WriteTx` over a PostgreSQL connection in a READ COMMITTED transaction; state changes of
sends are guarded in SQL, and claims skip rows another replica is claiming (SKIP LOCKED).

PostgreSQL aborts the whole transaction when a statement fails, where SQLite only undoes the
statement; so expected failures (a duplicate email, an unknown message) are detected with
guarded statements instead of caught errors, and the transaction stays usable as in SQLite.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import psycopg
from psycopg.pq import TransactionStatus

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
from runner.store import postgres_rows as rows
from runner.store.errors import EventConflict, StoreError, TransactionAborted
from runner.store.postgres_claims import PgClaimsTx
from runner.store.postgres_people import PeopleWrites
from runner.store.postgres_session import is_server_fault, unavailable
from runner.store.rows import SUBSCRIBER_COLUMNS

# Held (transaction-scoped) by every ingest: client events get their seq and commit in the
# same order across replicas, so the processor never sees a smaller seq appear later, and
# concurrent ingests of one id cannot both insert it.
EVENTS_LOCK = 0x7077_6576  # "pwev"
LIFECYCLE_LOCK = 0x7077_6C63  # "pwlc": applying files, scheduled starts, stop_at stops
ENGINE_LOCK = 0x7077_656E  # "pwen": event processing and scheduler ticks

_INSERT_EVENT = """
INSERT INTO events (client_id, type, email, fields, groups, data, occurred_at, received_at,
                    derived_from, processed)
VALUES (NULL, %s, %s, NULL, NULL, %s, NULL, %s, %s, %s) RETURNING *
"""

# Savepoint names: unique within the process, so nested scopes never share one.
_SAVEPOINTS = itertools.count(1)


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


class PgWriteTx(PgClaimsTx, PeopleWrites):
    """Reads and writes inside one READ COMMITTED transaction."""

    def ingest_group(
        self, calls: Sequence[Sequence[IncomingEvent]], received_at: datetime
    ) -> list[list[str] | EventConflict]:
        """Store the events of several ingest calls at once, each call atomic on its own.

        The caller holds EVENTS_LOCK, so the ids looked up here cannot be inserted by another
        replica before this transaction commits. A call with a conflicting id gets its
        EventConflict and stores nothing.
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

    def lock_events(self) -> None:
        """Take EVENTS_LOCK until the transaction ends."""
        self._run("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))

    def _known_ids(self, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        found = self._all(
            "SELECT id, body_hash FROM event_ids WHERE id = ANY(%s::text[])", sorted(ids)
        )
        return {row["id"]: row["body_hash"] for row in found}

    def _insert_events(self, events: Sequence[IncomingEvent], received_at: datetime) -> None:
        if not events:
            return
        allocated = self._all(
            "SELECT nextval(pg_get_serial_sequence('events', 'seq')) AS seq"
            " FROM generate_series(1, %s)",
            len(events),
        )
        seqs = sorted(int(row["seq"]) for row in allocated)
        when = rows.instant(received_at)
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO events (seq, client_id, type, email, fields, groups, data,"
                " occurred_at, received_at, derived_from, processed)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, FALSE)",
                [
                    (
                        seq,
                        e.id,
                        e.type,
                        normalise_email(e.email),
                        rows.opt_dumps(e.fields),
                        rows.opt_dumps(e.groups),
                        rows.dumps(e.data),
                        rows.opt_instant(e.occurred_at),
                        when,
                    )
                    for seq, e in zip(seqs, events, strict=True)
                ],
            )
            cursor.executemany(
                "INSERT INTO event_ids (id, body_hash, seq, received_at) VALUES (%s, %s, %s, %s)",
                [(e.id, e.body_hash, seq, when) for seq, e in zip(seqs, events, strict=True)],
            )

    def unprocessed_events(self, limit: int) -> list[StoredEvent]:
        """Received events the engine has not processed, by seq."""
        found = self._all("SELECT * FROM events WHERE NOT processed ORDER BY seq LIMIT %s", limit)
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
            type,
            normalise_email(email),
            rows.dumps(data),
            rows.instant(received_at),
            derived_from,
            processed,
        )
        assert row is not None
        return rows.event_of(row)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the block's writes when it raises (the exception goes on); keep them otherwise."""
        name = f"pw_savepoint_{next(_SAVEPOINTS)}"
        self._run(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException as error:
            if is_server_fault(error):  # a timeout or a lost session, not this block's data
                raise unavailable(error) from error
            if not self._in_transaction():
                raise TransactionAborted(f"the transaction was lost: {error}") from error
            try:
                self._run(f"ROLLBACK TO SAVEPOINT {name}")
                self._run(f"RELEASE SAVEPOINT {name}")
            except psycopg.Error as failed:
                raise TransactionAborted(f"cannot roll back to a savepoint: {failed}") from error
            raise
        if self.conn.info.transaction_status is TransactionStatus.INERROR:
            # A statement of the block failed and the block swallowed the error: PostgreSQL
            # cannot undo that statement alone, so the whole block is undone and reported.
            self._run(f"ROLLBACK TO SAVEPOINT {name}")
            self._run(f"RELEASE SAVEPOINT {name}")
            raise StoreError("a statement failed inside a savepoint block; the block was undone")
        self._run(f"RELEASE SAVEPOINT {name}")

    def _in_transaction(self) -> bool:
        status = self.conn.info.transaction_status
        return not self.conn.broken and status in (
            TransactionStatus.INTRANS,
            TransactionStatus.INERROR,
        )

    def mark_failed(self, seq: int, error: str) -> None:
        """Mark a received event processed, recording why its processing failed."""
        self._run("UPDATE events SET processed = TRUE, error = %s WHERE seq = %s", (error, seq))

    def mark_processed(self, seqs: Sequence[int]) -> None:
        """Mark received events as processed."""
        if seqs:
            self._run(
                "UPDATE events SET processed = TRUE WHERE seq = ANY(%s::bigint[])", (list(seqs),)
            )

    def save_subscriber(self, subscriber: Subscriber) -> Subscriber:
        """Insert (id None) or update a subscriber; returns it with its id and normalised email."""
        email = normalise_email(subscriber.email)
        values = rows.subscriber_values(subscriber, email)
        if subscriber.id is None:
            row = self._one(
                f"INSERT INTO subscribers ({SUBSCRIBER_COLUMNS})"
                f" VALUES ({_placeholders(len(values))})"
                " ON CONFLICT (email) DO NOTHING RETURNING id",
                *values,
            )
            if row is None:
                raise StoreError(f"subscriber {email!r} cannot be saved: the email is taken")
            return dataclasses.replace(subscriber, id=row["id"], email=email)
        changed = self._run(
            f"UPDATE subscribers SET ({SUBSCRIBER_COLUMNS}) = ({_placeholders(len(values))})"
            " WHERE id = %s"
            " AND NOT EXISTS (SELECT 1 FROM subscribers WHERE email = %s AND id <> %s)",
            (*values, subscriber.id, email, subscriber.id),
        )
        if changed != 1:
            if self._one("SELECT 1 FROM subscribers WHERE id = %s", subscriber.id) is None:
                raise StoreError(f"subscriber {subscriber.id} does not exist")
            raise StoreError(f"subscriber {email!r} cannot be saved: the email is taken")
        return dataclasses.replace(subscriber, email=email)

    def save_automation(self, automation: AppliedAutomation) -> None:
        """Insert or replace the applied version of an automation."""
        self._run(
            "INSERT INTO automations (id, revision, status, source, templates, path, commit_sha,"
            " applied_at, started_at, stopped_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
                rows.instant(automation.applied_at),
                rows.opt_instant(automation.started_at),
                rows.opt_instant(automation.stopped_at),
            ),
        )

    def add_history(self, entry: HistoryEntry) -> None:
        """Record an applied change."""
        self._run(
            "INSERT INTO history (automation_id, at, kind, previous, value, commit_sha, detail)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                entry.automation_id,
                rows.instant(entry.at),
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
            " VALUES (%s, %s, %s, %s, 1) ON CONFLICT (automation_id, subscriber_id)"
            " DO UPDATE SET last_at = excluded.last_at, count = entries.count + 1 RETURNING *",
            automation_id,
            subscriber_id,
            rows.instant(at),
            rows.instant(at),
        )
        assert row is not None
        return rows.entry_of(row)

    def insert_pending(self, send: PendingSend) -> None:
        """Store a new pending send; inserting an id again changes nothing (safe retries)."""
        values = rows.send_values(send)
        self._run(
            f"INSERT INTO pending_sends ({rows.SEND_COLUMNS})"
            f" VALUES ({_placeholders(len(values))}) ON CONFLICT (id) DO NOTHING",
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
        if not origins or not send_ids:
            return 0
        return self._run(
            "UPDATE pending_sends SET status = %s, reason = %s, updated_at = %s,"
            " lease_token = NULL, lease_until = NULL"
            " WHERE id = ANY(%s::text[]) AND status = ANY(%s::text[])",
            (to.value, reason, rows.instant(now), list(send_ids), origins),
        )

    def reschedule(
        self, send_id: str, due_at: datetime, now: datetime, *, token: str | None = None
    ) -> bool:
        """Set a PENDING send's due time; with `token`, also return a held claim to PENDING."""
        if token is None:
            return (
                self._run(
                    "UPDATE pending_sends SET due_at = %s, updated_at = %s"
                    " WHERE id = %s AND status = 'pending'",
                    (rows.instant(due_at), rows.instant(now), send_id),
                )
                == 1
            )
        return (
            self._run(
                "UPDATE pending_sends SET due_at = %s, updated_at = %s, status = 'pending',"
                " lease_token = NULL, lease_until = NULL"
                " WHERE id = %s AND status = 'claimed' AND lease_token = %s",
                (rows.instant(due_at), rows.instant(now), send_id, token),
            )
            == 1
        )

    def send_now(self, send_id: str, now: datetime) -> bool:
        """Make a PENDING send due at `now`, skipping its send window."""
        when = rows.instant(now)
        return (
            self._run(
                "UPDATE pending_sends SET due_at = %s, updated_at = %s, skip_window = TRUE"
                " WHERE id = %s AND status = 'pending'",
                (when, when, send_id),
            )
            == 1
        )

    def insert_message(self, message: Message) -> None:
        """Store a message handed to a provider; inserting an id again changes nothing."""
        values = rows.message_values(message)
        self._run(
            f"INSERT INTO messages ({rows.MESSAGE_COLUMNS})"
            f" VALUES ({_placeholders(len(values))}) ON CONFLICT (id) DO NOTHING",
            values,
        )

    def set_message_status(self, message_id: str, status: str) -> None:
        """Mark a message bounced or failed."""
        self._run("UPDATE messages SET status = %s WHERE id = %s", (status, message_id))

    def insert_message_event(self, event: MessageEvent) -> bool:
        """Store a provider event; False when its provider event id was seen before."""
        # Guarded rather than left to the foreign key: a violation would abort the transaction.
        inserted = self._run(
            "INSERT INTO message_events (provider, provider_event_id, message_id, type,"
            " occurred_at, received_at, url, bounce)"
            " SELECT %s, %s, %s, %s, %s, %s, %s, %s"
            " WHERE EXISTS (SELECT 1 FROM messages WHERE id = %s)"
            " ON CONFLICT (provider, provider_event_id) DO NOTHING",
            (
                event.provider,
                event.provider_event_id,
                event.message_id,
                event.type,
                rows.instant(event.occurred_at),
                rows.instant(event.received_at),
                event.url,
                event.bounce,
                event.message_id,
            ),
        )
        if inserted == 1:
            return True
        if self._one("SELECT 1 FROM messages WHERE id = %s", event.message_id) is None:
            raise StoreError(f"message {event.message_id!r} is not in the store")
        return False

    def claim_once(self, key: str, at: datetime) -> bool:
        """True the first time `key` is claimed (a concurrent claimer waits, then gets False)."""
        return (
            self._run(
                "INSERT INTO once (key, at) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, rows.instant(at)),
            )
            == 1
        )

    def purge_claims(self, prefix: str, before: datetime) -> int:
        """Forget claims of `prefix` older than `before`."""
        return self._run(
            "DELETE FROM once WHERE starts_with(key, %s) AND at < %s",
            (prefix, rows.instant(before)),
        )

    def lock_lifecycle(self) -> None:
        """Wait for LIFECYCLE_LOCK, held until this transaction ends; READ COMMITTED makes every
        later statement see what the previous holder committed."""
        self._run("SELECT pg_advisory_xact_lock(%s)", (LIFECYCLE_LOCK,))

    def lock_engine(self) -> None:
        """Wait for ENGINE_LOCK, held until this transaction ends: one replica processes
        events (in seq order) or ticks the scheduler at a time."""
        self._run("SELECT pg_advisory_xact_lock(%s)", (ENGINE_LOCK,))

    def try_lock_engine(self) -> bool:
        """Take ENGINE_LOCK if nobody holds it; False instead of waiting."""
        row = self._one("SELECT pg_try_advisory_xact_lock(%s) AS taken", ENGINE_LOCK)
        return row is not None and bool(row["taken"])

    def set_meta(self, key: str, value: str) -> None:
        """Set a runner-wide value."""
        self._run(
            "INSERT INTO meta (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def delete_meta(self, key: str) -> bool:
        """Remove a runner-wide value; False when there was none."""
        return self._run("DELETE FROM meta WHERE key = %s", (key,)) == 1

    def purge_event_ids(self, before: datetime) -> int:
        """Forget client event ids received before `before` (uses event_ids_by_time)."""
        return self._run("DELETE FROM event_ids WHERE received_at < %s", (rows.instant(before),))
