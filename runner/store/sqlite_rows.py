"""Conversions between store records and SQLite values: times as sortable UTC text, JSON as
TEXT with sorted keys, and one function per table turning a row into its record."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

from runner.store.records import (
    AppliedAutomation,
    Entry,
    HistoryEntry,
    Message,
    MessageEvent,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
)

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def time_text(instant: datetime) -> str:
    """An aware datetime as fixed-width UTC text with microseconds (sorts like the instant)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: the store keeps aware instants")
    return instant.astimezone(UTC).strftime(_TIME_FORMAT)


def opt_time_text(instant: datetime | None) -> str | None:
    """`time_text`, keeping None."""
    return None if instant is None else time_text(instant)


def parse_time(text: str) -> datetime:
    """The aware UTC datetime of a stored time."""
    return datetime.fromisoformat(text).astimezone(UTC)


def opt_time(text: str | None) -> datetime | None:
    """`parse_time`, keeping None."""
    return None if text is None else parse_time(text)


def _encode_default(value: object) -> object:
    # Engine values (trigger events, history values) may hold datetimes or sets; store them in
    # their JSON-friendly form rather than failing the whole transaction in the writer thread.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: object) -> str:
    """Canonical JSON text of a value (sorted keys, no spaces)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_encode_default
    )


def opt_dumps(value: object | None) -> str | None:
    """`dumps`, keeping None."""
    return None if value is None else dumps(value)


def loads(text: str | None) -> Any:
    """The value of stored JSON text (None stays None)."""
    return None if text is None else json.loads(text)


def event_of(row: sqlite3.Row) -> StoredEvent:
    """A row of `events`."""
    return StoredEvent(
        seq=row["seq"],
        id=row["client_id"],
        type=row["type"],
        email=row["email"],
        fields=loads(row["fields"]),
        groups=loads(row["groups"]),
        data=loads(row["data"]),
        occurred_at=opt_time(row["occurred_at"]),
        received_at=parse_time(row["received_at"]),
        derived_from=row["derived_from"],
        error=row["error"],
    )


def subscriber_of(row: sqlite3.Row) -> Subscriber:
    """A row of `subscribers`."""
    return Subscriber(
        id=row["id"],
        email=row["email"],
        fields=loads(row["fields"]),
        groups=set(loads(row["groups"])),
        created_at=opt_time(row["created_at"]),
        suppressed=row["suppressed"],
        suppressed_at=opt_time(row["suppressed_at"]),
        deleted_at=opt_time(row["deleted_at"]),
    )


def automation_of(row: sqlite3.Row) -> AppliedAutomation:
    """A row of `automations`."""
    return AppliedAutomation(
        id=row["id"],
        revision=row["revision"],
        status=row["status"],
        source=row["source"],
        templates=loads(row["templates"]),
        path=row["path"],
        commit=row["commit_sha"],
        applied_at=parse_time(row["applied_at"]),
        started_at=opt_time(row["started_at"]),
        stopped_at=opt_time(row["stopped_at"]),
    )


def history_of(row: sqlite3.Row) -> HistoryEntry:
    """A row of `history`."""
    return HistoryEntry(
        automation_id=row["automation_id"],
        at=parse_time(row["at"]),
        kind=row["kind"],
        previous=loads(row["previous"]),
        value=loads(row["value"]),
        commit=row["commit_sha"],
        detail=row["detail"],
    )


def entry_of(row: sqlite3.Row) -> Entry:
    """A row of `entries`."""
    return Entry(
        automation_id=row["automation_id"],
        subscriber_id=row["subscriber_id"],
        first_at=parse_time(row["first_at"]),
        last_at=parse_time(row["last_at"]),
        count=row["count"],
    )


def send_of(row: sqlite3.Row) -> PendingSend:
    """A row of `pending_sends`."""
    return PendingSend(
        id=row["id"],
        automation_id=row["automation_id"],
        subscriber_id=row["subscriber_id"],
        email=row["email"],
        due_at=parse_time(row["due_at"]),
        status=SendStatus(row["status"]),
        trigger_at=parse_time(row["trigger_at"]),
        trigger_event=loads(row["trigger_event"]),
        created_at=parse_time(row["created_at"]),
        series_id=row["series_id"],
        repeat_index=row["repeat_index"],
        overrides=loads(row["overrides"]),
        reason=row["reason"],
        attempts=row["attempts"],
        lease_token=row["lease_token"],
        lease_until=opt_time(row["lease_until"]),
        updated_at=opt_time(row["updated_at"]),
        last_error=row["last_error"],
        skip_window=bool(row["skip_window"]),
    )


def send_values(send: PendingSend) -> tuple[object, ...]:
    """The `pending_sends` columns of a send, in table order."""
    return (
        send.id,
        send.automation_id,
        send.subscriber_id,
        send.email,
        time_text(send.due_at),
        send.status.value,
        time_text(send.trigger_at),
        dumps(send.trigger_event),
        time_text(send.created_at),
        send.series_id,
        send.repeat_index,
        dumps(send.overrides),
        send.reason,
        send.attempts,
        send.lease_token,
        opt_time_text(send.lease_until),
        opt_time_text(send.updated_at),
        send.last_error,
        int(send.skip_window),
    )


def message_of(row: sqlite3.Row) -> Message:
    """A row of `messages`."""
    return Message(
        id=row["id"],
        pending_send_id=row["pending_send_id"],
        automation_id=row["automation_id"],
        subscriber_id=row["subscriber_id"],
        to=row["to_address"],
        from_=row["from_address"],
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
        headers=loads(row["headers"]),
        provider=row["provider"],
        provider_type=row["provider_type"],
        provider_message_id=row["provider_message_id"],
        sent_at=parse_time(row["sent_at"]),
        revision=row["revision"],
        listeners=loads(row["listeners"]),
        status=row["status"],
    )


def message_values(message: Message) -> tuple[object, ...]:
    """The `messages` columns of a message, in table order."""
    return (
        message.id,
        message.pending_send_id,
        message.automation_id,
        message.subscriber_id,
        message.to,
        message.from_,
        message.subject,
        message.html,
        message.text,
        dumps(message.headers),
        message.provider,
        message.provider_type,
        message.provider_message_id,
        time_text(message.sent_at),
        message.revision,
        dumps(message.listeners),
        message.status,
    )


def message_event_of(row: sqlite3.Row) -> MessageEvent:
    """A row of `message_events`."""
    return MessageEvent(
        provider=row["provider"],
        provider_event_id=row["provider_event_id"],
        message_id=row["message_id"],
        type=row["type"],
        occurred_at=parse_time(row["occurred_at"]),
        received_at=parse_time(row["received_at"]),
        url=row["url"],
        bounce=row["bounce"],
    )
