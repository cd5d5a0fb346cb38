"""Conversions between store records and PostgreSQL values: instants are TIMESTAMPTZ (aware
datetimes both ways, read back in UTC), JSON is TEXT written by SQLite's canonical encoder so
both stores round-trip alike, and one function per table turns a dict row into its record."""

from __future__ import annotations

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
from runner.store.sqlite_rows import dumps, loads, opt_dumps

Row = dict[str, Any]

__all__ = ["dumps", "loads", "opt_dumps"]


def instant(value: datetime) -> datetime:
    """An aware datetime in UTC; naive ones are refused like SQLite's `time_text` does."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store keeps aware instants")
    return value.astimezone(UTC)


def opt_instant(value: datetime | None) -> datetime | None:
    """`instant`, keeping None."""
    return None if value is None else instant(value)


def read_time(value: datetime) -> datetime:
    """A TIMESTAMPTZ as read: the same instant with the `datetime.UTC` zone SQLite gives."""
    return value.astimezone(UTC)


def opt_read_time(value: datetime | None) -> datetime | None:
    """`read_time`, keeping None."""
    return None if value is None else value.astimezone(UTC)


def event_of(row: Row) -> StoredEvent:
    """A row of `events`."""
    return StoredEvent(
        seq=row["seq"],
        id=row["client_id"],
        type=row["type"],
        email=row["email"],
        fields=loads(row["fields"]),
        groups=loads(row["groups"]),
        data=loads(row["data"]),
        occurred_at=opt_read_time(row["occurred_at"]),
        received_at=read_time(row["received_at"]),
        derived_from=row["derived_from"],
        error=row["error"],
    )


def subscriber_of(row: Row) -> Subscriber:
    """A row of `subscribers`."""
    return Subscriber(
        id=row["id"],
        email=row["email"],
        fields=loads(row["fields"]),
        groups=set(loads(row["groups"])),
        created_at=opt_read_time(row["created_at"]),
        suppressed=row["suppressed"],
        suppressed_at=opt_read_time(row["suppressed_at"]),
        deleted_at=opt_read_time(row["deleted_at"]),
    )


def automation_of(row: Row) -> AppliedAutomation:
    """A row of `automations`."""
    return AppliedAutomation(
        id=row["id"],
        revision=row["revision"],
        status=row["status"],
        source=row["source"],
        templates=loads(row["templates"]),
        path=row["path"],
        commit=row["commit_sha"],
        applied_at=read_time(row["applied_at"]),
        started_at=opt_read_time(row["started_at"]),
        stopped_at=opt_read_time(row["stopped_at"]),
    )


def history_of(row: Row) -> HistoryEntry:
    """A row of `history`."""
    return HistoryEntry(
        automation_id=row["automation_id"],
        at=read_time(row["at"]),
        kind=row["kind"],
        previous=loads(row["previous"]),
        value=loads(row["value"]),
        commit=row["commit_sha"],
        detail=row["detail"],
    )


def entry_of(row: Row) -> Entry:
    """A row of `entries`."""
    return Entry(
        automation_id=row["automation_id"],
        subscriber_id=row["subscriber_id"],
        first_at=read_time(row["first_at"]),
        last_at=read_time(row["last_at"]),
        count=row["count"],
    )


SEND_COLUMNS = (
    "id, automation_id, subscriber_id, email, due_at, status, trigger_at, trigger_event,"
    " created_at, series_id, repeat_index, overrides, reason, attempts, lease_token,"
    " lease_until, updated_at, last_error, skip_window"
)


def send_of(row: Row) -> PendingSend:
    """A row of `pending_sends`."""
    return PendingSend(
        id=row["id"],
        automation_id=row["automation_id"],
        subscriber_id=row["subscriber_id"],
        email=row["email"],
        due_at=read_time(row["due_at"]),
        status=SendStatus(row["status"]),
        trigger_at=read_time(row["trigger_at"]),
        trigger_event=loads(row["trigger_event"]),
        created_at=read_time(row["created_at"]),
        series_id=row["series_id"],
        repeat_index=row["repeat_index"],
        overrides=loads(row["overrides"]),
        reason=row["reason"],
        attempts=row["attempts"],
        lease_token=row["lease_token"],
        lease_until=opt_read_time(row["lease_until"]),
        updated_at=opt_read_time(row["updated_at"]),
        last_error=row["last_error"],
        skip_window=bool(row["skip_window"]),
    )


def send_values(send: PendingSend) -> tuple[object, ...]:
    """The values of SEND_COLUMNS for a send."""
    return (
        send.id,
        send.automation_id,
        send.subscriber_id,
        send.email,
        instant(send.due_at),
        send.status.value,
        instant(send.trigger_at),
        dumps(send.trigger_event),
        instant(send.created_at),
        send.series_id,
        send.repeat_index,
        dumps(send.overrides),
        send.reason,
        send.attempts,
        send.lease_token,
        opt_instant(send.lease_until),
        opt_instant(send.updated_at),
        send.last_error,
        send.skip_window,
    )


MESSAGE_COLUMNS = (
    "id, pending_send_id, automation_id, subscriber_id, to_address, from_address, subject,"
    " html, text, headers, provider, provider_type, provider_message_id, sent_at, revision,"
    " listeners, status"
)


def message_of(row: Row) -> Message:
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
        sent_at=read_time(row["sent_at"]),
        revision=row["revision"],
        listeners=loads(row["listeners"]),
        status=row["status"],
    )


def message_values(message: Message) -> tuple[object, ...]:
    """The values of MESSAGE_COLUMNS for a message."""
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
        instant(message.sent_at),
        message.revision,
        dumps(message.listeners),
        message.status,
    )


def message_event_of(row: Row) -> MessageEvent:
    """A row of `message_events`."""
    return MessageEvent(
        provider=row["provider"],
        provider_event_id=row["provider_event_id"],
        message_id=row["message_id"],
        type=row["type"],
        occurred_at=read_time(row["occurred_at"]),
        received_at=read_time(row["received_at"]),
        url=row["url"],
        bounce=row["bounce"],
    )
