"""Plain records the store reads and writes (no I/O, no SQL).

Every datetime is timezone-aware UTC. JSON-like values are plain dicts and
lists. Ids of pending sends and messages are opaque strings (ULID-like, time
ordered) chosen by the engine, so a crashed runner can retry an insert safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class SendStatus(StrEnum):
    """States of a pending send; transitions are guarded in SQL."""

    PENDING = "pending"  # waiting for its due time
    CLAIMED = "claimed"  # leased by a sender; lease_until bounds the claim
    SENT = "sent"  # the provider accepted it (or the outbox stored it)
    FAILED = "failed"  # permanent provider error or retries exhausted
    CANCELLED = "cancelled"  # with a reason (paused, stopped, exit_on, ...)
    OUTCOME_UNKNOWN = "outcome_unknown"  # may have reached a key-less provider


class CancelReason(StrEnum):
    """Why a pending send was cancelled (kept with the send)."""

    PAUSED = "paused"
    STOPPED = "stopped"
    DELETED = "deleted"
    REMOVED = "removed"
    EXIT_ON = "exit_on"
    SUPPRESSED = "suppressed"
    AUDIENCE = "audience"
    DELETED_SUBSCRIBER = "deleted_subscriber"
    REANCHORED = "reanchored"
    NOT_RUNNING = "not_running"
    RENDER_ERROR = "render_error"


# A series ends when one of its sends is cancelled for one of these reasons.
SERIES_ENDING = frozenset(
    {
        CancelReason.EXIT_ON,
        CancelReason.STOPPED,
        CancelReason.DELETED,
        CancelReason.REMOVED,
        CancelReason.DELETED_SUBSCRIBER,
    }
)


def normalise_email(email: str) -> str:
    """The key of a subscriber: the email trimmed and lower-cased (docs/events.md)."""
    return email.strip().lower()


@dataclass(frozen=True)
class IncomingEvent:
    """An event as accepted by `POST /v1/events`, before it is stored."""

    id: str
    type: str
    email: str
    fields: dict[str, Any] | None
    groups: list[str] | None
    data: dict[str, Any]
    occurred_at: datetime | None
    body_hash: str  # hash of the canonical JSON body, to tell duplicates from conflicts


@dataclass(frozen=True)
class StoredEvent:
    """An event in the store, in receipt order (`seq`)."""

    seq: int
    id: str | None  # the client's id; None for derived and internal events
    type: str
    email: str
    fields: dict[str, Any] | None
    groups: list[str] | None
    data: dict[str, Any]
    occurred_at: datetime | None
    received_at: datetime  # the trigger time (docs/events.md "Time")
    derived_from: int | None = None
    error: str | None = None  # why processing it failed (it was then skipped)


@dataclass
class Subscriber:
    """A subscriber keyed by trimmed, lower-cased email."""

    id: int | None
    email: str
    fields: dict[str, Any] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)
    created_at: datetime | None = None
    suppressed: str | None = None  # unsubscribed | bounced | complained
    suppressed_at: datetime | None = None
    deleted_at: datetime | None = None
    # Where the suppression came from (runner.engine.suppression builds these), shown by the
    # subscribers API next to its reason and time.
    suppressed_source: dict[str, Any] | None = None
    erased_at: datetime | None = None  # a deleted subscriber whose traces were scrubbed too


@dataclass(frozen=True)
class AppliedAutomation:
    """The version of an automation the runner has applied, with lifecycle moments."""

    id: str
    revision: int  # increases with every applied change
    status: str  # written status of the applied version, or "deleted"
    source: str  # the YAML text of the applied version: reloaded through the loader
    templates: dict[str, str]  # html_file/text_file key -> file text at apply time
    path: str
    commit: str | None
    applied_at: datetime
    started_at: datetime | None  # the recorded start moment
    stopped_at: datetime | None


@dataclass(frozen=True)
class HistoryEntry:
    """One applied status or definition change."""

    automation_id: str
    at: datetime
    kind: str  # "status" | "definition" | "pending" (send now / remove)
    previous: Any
    value: Any
    commit: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class PendingSend:
    """One email to one subscriber, due at `due_at`."""

    id: str
    automation_id: str
    subscriber_id: int
    email: str
    due_at: datetime
    status: SendStatus
    trigger_at: datetime  # the trigger time (series anchor)
    trigger_event: dict[str, Any]  # the `event` template variable
    created_at: datetime
    series_id: str  # the first send's id; repeats share it
    repeat_index: int = 0  # 0 = the first email, k = repeat k
    overrides: dict[str, Any] = field(default_factory=dict)  # api trigger data
    reason: str | None = None
    attempts: int = 0
    lease_token: str | None = None
    lease_until: datetime | None = None
    updated_at: datetime | None = None
    last_error: str | None = None
    skip_window: bool = False  # set by "send now": the send window is not checked
    # The request that may have reached a provider, stored before it was written (opaque to
    # the store; runner.engine.inflight reads it). None once its outcome is known.
    in_flight: dict[str, Any] | None = None
    # Set when a stop, a delete or the subscriber's deletion came while the request was in
    # flight: its outcome is still recorded, then no retry and no next repeat follow.
    halted: CancelReason | None = None


@dataclass(frozen=True)
class Message:
    """A rendered email handed to a provider (the outbox stores it whole)."""

    id: str
    pending_send_id: str
    automation_id: str
    subscriber_id: int
    to: str
    from_: str
    subject: str
    html: str | None
    text: str | None
    headers: dict[str, str]
    provider: str
    provider_type: str
    provider_message_id: str | None
    sent_at: datetime
    revision: int  # the automation revision it was rendered with
    listeners: list[str] = field(default_factory=list)  # automations counting it (email triggers)
    status: str = "sent"  # sent | failed | bounced


@dataclass(frozen=True)
class MessageEvent:
    """A provider event about one message (delivered, opened, clicked, ...)."""

    provider: str
    provider_event_id: str
    message_id: str
    type: str  # delivered | opened | clicked | bounced | complained | unsubscribed
    occurred_at: datetime
    received_at: datetime
    url: str | None = None
    bounce: str | None = None  # hard | soft


@dataclass(frozen=True)
class Entry:
    """Retrigger memory: when a subscriber last entered an automation."""

    automation_id: str
    subscriber_id: int
    first_at: datetime
    last_at: datetime
    count: int


@dataclass(frozen=True)
class SuppressionLift:
    """A hard-bounce or complaint suppression lifted through the subscribers API: what it was,
    who lifted it and why."""

    subscriber_id: int
    lifted_at: datetime
    reason: str  # the suppression lifted (bounced, complained, ...)
    suppressed_at: datetime | None
    source: dict[str, Any] | None
    lifted_by: str
    note: str | None = None


@dataclass(frozen=True)
class SubscriberQuery:
    """One page of live subscribers, by id: those with id > `after_id`, filtered."""

    after_id: int = 0
    limit: int = 100
    suppressed: bool | None = None  # True: any suppression; False: none
    reason: str | None = None  # only this suppression reason
    group: str | None = None  # only members of this group
