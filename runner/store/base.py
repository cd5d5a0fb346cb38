"""The store's ports: `Store` (async, owned by the server) and the transaction
protocols `ReadTx` / `WriteTx` that engine code runs inside.

Engine logic is plain synchronous Python over a transaction object; the store
runs it in its own thread (SQLite: one writer thread, several readers) and
commits, or rolls back when it raises. So one piece of engine code serves every
store, and the SQL stays in the store module of each dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from runner.core.prefilter import Prefilter
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
    SubscriberQuery,
    SuppressionLift,
)
from runner.store.claims import ClaimsTx
from runner.store.dashboard_stats import DayStats, MessageCounts, Rates, RevisionStats
from runner.store.fanout import FanOutTx, SweepRow

T = TypeVar("T")


@dataclass
class Stats(Rates):
    """Per-automation counts; rates are computed from the counts (the message counts are
    named as in MessageCounts)."""

    triggered: int = 0
    pending: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unique_openers: int = 0
    unique_clickers: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    complained: int = 0
    unsubscribed: int = 0
    failed: int = 0
    outcome_unknown: int = 0
    cancelled: dict[str, int] = field(default_factory=dict)


class ReadTx(Protocol):
    """Reads inside one consistent snapshot of the store."""

    def automations(self) -> list[AppliedAutomation]:
        """Every applied automation, deleted ones included."""

    def automation(self, automation_id: str) -> AppliedAutomation | None:
        """One applied automation."""

    def history(self, automation_id: str) -> list[HistoryEntry]:
        """Applied changes of one automation, oldest first."""

    def status_changes(self) -> list[HistoryEntry]:
        """Every history entry of kind "status" (effective status moments), oldest first."""

    def subscriber(self, email: str) -> Subscriber | None:
        """A subscriber by normalised email."""

    def subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        """A subscriber by id."""

    def subscribers_by_ids(self, subscriber_ids: Collection[int]) -> dict[int, Subscriber]:
        """The subscribers of `subscriber_ids` that exist, by id (the sender's checks read a
        round's subscribers at once)."""

    def subscribers_by_emails(self, emails: Collection[str]) -> dict[str, Subscriber]:
        """The subscribers of the normalised `emails` that exist, by email (event processing
        reads a batch's subscribers at once)."""

    def subscribers(self, after_id: int, limit: int) -> list[Subscriber]:
        """Live (not deleted) subscribers with id > after_id, by id: pages for firings."""

    def sweep_page(
        self, after_id: int, until_id: int, limit: int, tests: Sequence[Prefilter] = ()
    ) -> list[Subscriber]:
        """Live, unsuppressed subscribers with after_id < id <= until_id passing every test,
        by id, at most `limit`: a page of a firing's sweep."""

    def sweep_rows(
        self, after_id: int, until_id: int, limit: int, tests: Sequence[Prefilter] = ()
    ) -> list[SweepRow]:
        """`sweep_page` as undecoded rows: id, email, fields and groups (JSON text)."""

    def exact_field_tests(self) -> bool:
        """Whether this store's field tests match exactly where the audience check would,
        except on fields holding an escaped NUL (`\\u0000`), see `decided` in prefilter."""

    def last_subscriber_id(self) -> int:
        """The highest subscriber id (0 without subscribers)."""

    def pending_send(self, send_id: str) -> PendingSend | None:
        """One pending send by id, whatever its status."""

    def pending_sends(
        self, automation_id: str, statuses: Collection[SendStatus], limit: int = 100
    ) -> list[PendingSend]:
        """Sends of one automation in the given statuses, by due time."""

    def active_sends(
        self, subscriber_id: int, automation_id: str | None = None
    ) -> list[PendingSend]:
        """PENDING and CLAIMED sends of a subscriber (optionally of one automation)."""

    def entry(self, automation_id: str, subscriber_id: int) -> Entry | None:
        """Retrigger memory of one subscriber in one automation."""

    def events_after(
        self, email: str, types: Collection[str], after: datetime
    ) -> list[StoredEvent]:
        """Events of a subscriber of the given types received strictly after `after`."""

    def messages(self, limit: int, automation_id: str | None = None) -> list[Message]:
        """Messages, newest first."""

    def message(self, message_id: str) -> Message | None:
        """One message by our id."""

    def message_by_provider_id(self, provider: str, provider_message_id: str) -> Message | None:
        """One message by the provider's id for it."""

    def message_events(self, message_id: str) -> list[MessageEvent]:
        """Provider events of one message, in receipt order."""

    def messages_sent_between(
        self, automation_id: str, after: datetime, until: datetime
    ) -> list[Message]:
        """Messages of an automation sent in (after, until], for not_opened/not_clicked."""

    def stats(self, automation_id: str) -> Stats:
        """Counts of one automation."""

    def queue_depth(self) -> int:
        """PENDING and CLAIMED sends, over every automation."""

    def meta(self, key: str) -> str | None:
        """A runner-wide value (unsubscribe key, last scheduler tick, ...)."""

    def failed_events(self, limit: int) -> list[StoredEvent]:
        """Events whose processing failed (`error` set), newest first."""

    # Catching up with received events (read your writes) -------------------------------

    def last_event_seq(self) -> int:
        """The highest event seq committed so far (0 when there is none)."""

    def has_unprocessed(self, through: int) -> bool:
        """Whether an event with seq <= `through` still waits to be processed."""

    def unprocessed_count(self) -> int:
        """How many events wait to be processed (the load-shedding backlog)."""

    def event_by_id(self, client_id: str) -> StoredEvent | None:
        """The event received with this client id (while the id is remembered)."""

    # The subscribers API and erasure ---------------------------------------------------

    def list_subscribers(self, query: SubscriberQuery) -> list[Subscriber]:
        """Live subscribers with id > query.after_id matching its filters, by id."""

    def subscribers_by_prefix(self, prefix: str) -> list[Subscriber]:
        """Subscribers whose stored email starts with `prefix` (the tombstones of one
        address), by id."""

    def events_of(self, email: str) -> list[StoredEvent]:
        """Every event stored under this normalised email, by seq."""

    def subscriber_sends(self, subscriber_ids: Collection[int]) -> list[PendingSend]:
        """Sends of these subscribers in any status, by creation."""

    def subscriber_messages(
        self, subscriber_ids: Collection[int], limit: int | None = None
    ) -> list[Message]:
        """Messages to these subscribers, newest first (all of them when `limit` is None)."""

    def suppression_lifts(self, subscriber_id: int) -> list[SuppressionLift]:
        """Suppressions of one subscriber lifted through the API, oldest first."""

    # The dashboard (runner.store.sql_dashboard) ------------------------------------------

    def stats_by_revision(self, automation_id: str) -> list[RevisionStats]:
        """Message counts per revision that rendered messages, with its commit and subject."""

    def stats_by_day(self, automation_id: str, since: datetime) -> list[DayStats]:
        """Message counts per UTC day of sending, from `since`."""

    def sends_per_day(
        self, automation_ids: Sequence[str], since: datetime
    ) -> dict[str, dict[str, int]]:
        """Messages sent per UTC day from `since`, by automation."""

    def recent_counts(
        self, automation_ids: Sequence[str], since: datetime
    ) -> dict[str, MessageCounts]:
        """Message counts of messages sent from `since`, by automation."""

    def top_links(self, automation_id: str, limit: int = 10) -> list[tuple[str, int]]:
        """Clicked links of one automation by messages clicked, most first."""

    def opened_within(self, automation_id: str, window: timedelta) -> int:
        """Messages of one automation first opened within `window` of their sending."""


class WriteTx(ReadTx, ClaimsTx, FanOutTx, Protocol):
    """Writes inside one transaction (SQLite: BEGIN IMMEDIATE); the sender's claims are
    declared in runner.store.claims, a firing's pages entered in SQL in runner.store.fanout."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope: when its block raises, the block's writes are undone and the
        exception goes on (SAVEPOINT / ROLLBACK TO / RELEASE); otherwise they are kept.

        Raises TransactionAborted instead when the database lost the whole transaction.
        """

    def unprocessed_events(self, limit: int) -> list[StoredEvent]:
        """Received events the engine has not processed, by seq."""

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

    def mark_processed(self, seqs: Sequence[int]) -> None:
        """Mark received events as processed."""

    def mark_failed(self, seq: int, error: str) -> None:
        """Mark a received event processed, recording why its processing failed."""

    def save_subscriber(self, subscriber: Subscriber) -> Subscriber:
        """Insert (id None) or update a subscriber; returns it with its id."""

    def save_automation(self, automation: AppliedAutomation) -> None:
        """Insert or replace the applied version of an automation."""

    def add_history(self, entry: HistoryEntry) -> None:
        """Record an applied change."""

    def record_commit(self, sha: str, subject: str) -> None:
        """Remember an applied commit's subject line (stats by revision show it)."""

    def record_entry(self, automation_id: str, subscriber_id: int, at: datetime) -> Entry:
        """Remember that a subscriber entered an automation at `at`."""

    def record_entries(
        self, automation_id: str, subscriber_ids: Sequence[int], at: datetime
    ) -> None:
        """`record_entry` for many distinct subscribers at once (one statement, many rows)."""

    def enter_first(self, automation_id: str, subscriber_id: int, at: datetime) -> bool:
        """Record a subscriber's first entry into an automation at `at`; False, with nothing
        written, when they entered it before (one statement instead of a read and a write)."""

    def insert_pendings(self, sends: Sequence[PendingSend]) -> None:
        """`insert_pending` for many sends at once (one statement, many rows)."""

    def insert_pendings_like(
        self, template: PendingSend, varying: Sequence[tuple[str, int, str, datetime]]
    ) -> None:
        """`insert_pendings` of sends equal to `template`, a new series' first send, but for
        their (id, subscriber id, email, due time); each is its own series."""

    def insert_pending(self, send: PendingSend) -> None:
        """Store a new pending send (or a send cancelled at once)."""

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

    def reschedule(
        self, send_id: str, due_at: datetime, now: datetime, *, token: str | None = None
    ) -> bool:
        """Set a PENDING send's due time (send now, window re-check).

        With `token`, the send must be CLAIMED under that lease instead: it goes back to
        PENDING at `due_at` without counting an attempt (a claimed send outside its window);
        its in-flight mark stays as it is.
        """

    def send_now(self, send_id: str, now: datetime) -> bool:
        """Make a PENDING send due at `now` and skip its send window; False when not PENDING."""

    def insert_message(self, message: Message) -> None:
        """Store a message handed to a provider."""

    def set_message_status(self, message_id: str, status: str) -> None:
        """Mark a message bounced or failed."""

    def insert_message_event(self, event: MessageEvent) -> bool:
        """Store a provider event; False when its provider event id was seen before."""

    def claim_once(self, key: str, at: datetime) -> bool:
        """True the first time `key` is claimed (a cron tick, a date firing, a negative check)."""

    def lock_lifecycle(self) -> None:
        """Serialise writers of applied automations and status history across replicas until
        this transaction ends, and see what the previous holder committed (PostgreSQL: a
        transaction advisory lock; SQLite's single writer is serialised already)."""

    def lock_engine(self) -> None:
        """Serialise the engine's ordered work (event processing, scheduler ticks) across
        replicas until this transaction ends (PostgreSQL: a transaction advisory lock;
        SQLite's single writer is serialised already). Sending stays parallel."""

    def try_lock_engine(self) -> bool:
        """`lock_engine` without waiting: False when another transaction holds it."""

    def add_suppression_lift(self, lift: SuppressionLift) -> None:
        """Record a lifted suppression."""

    def clear_lift_notes(self, subscriber_ids: Collection[int]) -> int:
        """Forget the free-text notes of these subscribers' lifts (erasure); how many."""

    def rewrite_events(self, events: Sequence[StoredEvent]) -> None:
        """Overwrite the email, client id, fields, groups and data of stored events (by seq);
        a changed client id is renamed in the remembered ids too (erasure)."""

    def rewrite_sends(self, sends: Sequence[PendingSend]) -> None:
        """Overwrite the email, trigger event, overrides and last error of sends (erasure)."""

    def rewrite_messages(self, messages: Sequence[Message]) -> None:
        """Overwrite the recipient, subject, bodies and headers of messages (erasure)."""

    def rewrite_message_events(self, events: Sequence[MessageEvent]) -> None:
        """Overwrite the url of provider events, found by provider and event id (erasure)."""

    def set_meta(self, key: str, value: str) -> None:
        """Set a runner-wide value."""

    def delete_meta(self, key: str) -> bool:
        """Remove a runner-wide value; False when there was none."""

    def purge_claims(self, prefix: str, before: datetime) -> int:
        """Forget `claim_once` keys starting with `prefix` claimed before `before` (rate-limit
        slots: once their window passed nobody asks again). Returns how many."""

    def purge_event_ids(self, before: datetime) -> int:
        """Forget client event ids received before `before` (their retention ended): an id
        sent again after that is a new event. Returns how many were forgotten."""


class Store(Protocol):
    """A durable store; every method is safe to call from the event loop."""

    async def ingest(self, events: Sequence[IncomingEvent]) -> list[str]:
        """Store received events atomically ("stored" / "duplicate" each).

        Raises EventConflict (nothing stored) when an id was seen with another
        body. Returns only after the commit is durable; concurrent calls may be
        committed together (group commit). `received_at` is the commit time by
        the store's clock.
        """

    async def read(self, work: Callable[[ReadTx], T]) -> T:
        """Run `work` in a read transaction."""

    async def write(self, work: Callable[[WriteTx], T]) -> T:
        """Run `work` in a write transaction; commit when it returns, roll back when it raises."""

    async def drop_old_copies(self) -> bool:
        """Make rows changed or deleted so far unreadable in the database's own files (SQLite:
        fold the write-ahead log into the database and truncate it; freed space is already
        zeroed). False when that could not finish now (readers held it up)."""

    async def close(self) -> None:
        """Finish pending work and release the database."""
