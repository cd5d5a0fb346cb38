"""Records to database values and back, written once for both stores (pure).

A store differs from the other only in how it writes and reads instants (SQLite:
sortable UTC text; PostgreSQL: TIMESTAMPTZ) and flags; JSON is canonical text in both,
so values round-trip byte for byte whichever store holds them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from runner.core.records import (
    AppliedAutomation,
    CancelReason,
    Entry,
    HistoryEntry,
    Message,
    MessageEvent,
    PendingSend,
    SendStatus,
    StoredEvent,
    Subscriber,
    SubscriberQuery,
    SuppressionLift,
)
from runner.store.base import Stats

# Column lists in the order of RowCodec's *_values tuples.
SUBSCRIBER_COLUMNS = (
    "email, fields, groups, created_at, suppressed, suppressed_at, deleted_at,"
    " suppressed_source, erased_at"
)
LIFT_COLUMNS = "subscriber_id, lifted_at, reason, suppressed_at, source, lifted_by, note"
SEND_COLUMNS = (
    "id, automation_id, subscriber_id, email, due_at, status, trigger_at, trigger_event,"
    " created_at, series_id, repeat_index, overrides, reason, attempts, lease_token,"
    " lease_until, updated_at, last_error, skip_window, in_flight, halted"
)

MESSAGE_COLUMNS = (
    "id, pending_send_id, automation_id, subscriber_id, to_address, from_address, subject,"
    " html, text, headers, provider, provider_type, provider_message_id, sent_at, revision,"
    " listeners, status"
)


def subscriber_page_sql(
    query: SubscriberQuery, mark: str, in_group: str
) -> tuple[str, list[object]]:
    """The SELECT of one page of live subscribers and its arguments; `mark` is the dialect's
    placeholder and `in_group` its test of `groups` (a JSON array) holding one name."""
    sql = f"SELECT * FROM subscribers WHERE id > {mark} AND deleted_at IS NULL"
    args: list[object] = [query.after_id]
    if query.suppressed is not None:
        sql += " AND suppressed IS NOT NULL" if query.suppressed else " AND suppressed IS NULL"
    if query.reason is not None:
        sql += f" AND suppressed = {mark}"
        args.append(query.reason)
    if query.group is not None:
        sql += f" AND {in_group}"
        args.append(query.group)
    return f"{sql} ORDER BY id LIMIT {mark}", [*args, query.limit]


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, psycopg's dict rows)."""

    def __getitem__(self, key: str) -> Any: ...


def _encode_default(value: object) -> object:
    # Engine values (trigger events, history values) may hold datetimes or sets; store them in
    # their JSON-friendly form rather than failing the whole transaction in the writer thread.
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# Built once: json.dumps with options builds an encoder on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_encode_default
)


def dumps(value: object) -> str:
    """Canonical JSON text of a value (sorted keys, no spaces)."""
    return _ENCODER.encode(value)


def opt_dumps(value: object | None) -> str | None:
    """`dumps`, keeping None."""
    return None if value is None else dumps(value)


def loads(text: str | None) -> Any:
    """The value of stored JSON text (None stays None)."""
    return None if text is None else json.loads(text)


_ACTIVE = (SendStatus.PENDING, SendStatus.CLAIMED)
_COUNTED = {
    SendStatus.SENT: "sent",
    SendStatus.FAILED: "failed",
    SendStatus.OUTCOME_UNKNOWN: "outcome_unknown",
}


def stats_of(
    triggered: int, sends: Iterable[tuple[str, str | None, int]], messages: Mapping[str, Any]
) -> Stats:
    """Stats from a store's three aggregates: accepted entries, sends counted by (status,
    reason), and the per-message counts (columns named like Stats fields)."""
    stats = Stats(triggered=int(triggered))
    for status, reason, count in sends:
        if status in _ACTIVE:
            stats.pending += int(count)
        elif status in _COUNTED:
            name = _COUNTED[SendStatus(status)]
            setattr(stats, name, getattr(stats, name) + int(count))
        else:
            key = reason or "unknown"
            stats.cancelled[key] = stats.cancelled.get(key, 0) + int(count)
    for name, value in messages.items():
        setattr(stats, name, int(value))
    return stats


class RowCodec:
    """One function per table between a row (a mapping of columns) and its record."""

    def __init__(
        self,
        write_time: Callable[[datetime], Any],
        read_time: Callable[[Any], datetime],
        flag: Callable[[bool], Any],
    ) -> None:
        self.write_time = write_time
        self._read = read_time
        self.flag = flag  # a boolean as the driver binds it

    def _opt_write(self, value: datetime | None) -> Any:
        return None if value is None else self.write_time(value)

    def _opt_read(self, value: Any) -> datetime | None:
        return None if value is None else self._read(value)

    def opt_read_time(self, value: Any) -> datetime | None:
        """A stored time column as an aware datetime (None stays None)."""
        return self._opt_read(value)

    def event_of(self, row: Row) -> StoredEvent:
        """A row of `events`."""
        return StoredEvent(
            seq=row["seq"],
            id=row["client_id"],
            type=row["type"],
            email=row["email"],
            fields=loads(row["fields"]),
            groups=loads(row["groups"]),
            data=loads(row["data"]),
            occurred_at=self._opt_read(row["occurred_at"]),
            received_at=self._read(row["received_at"]),
            derived_from=row["derived_from"],
            error=row["error"],
        )

    def subscriber_of(self, row: Row) -> Subscriber:
        """A row of `subscribers`."""
        return Subscriber(
            id=row["id"],
            email=row["email"],
            fields=loads(row["fields"]),
            groups=set(loads(row["groups"])),
            created_at=self._opt_read(row["created_at"]),
            suppressed=row["suppressed"],
            suppressed_at=self._opt_read(row["suppressed_at"]),
            deleted_at=self._opt_read(row["deleted_at"]),
            suppressed_source=loads(row["suppressed_source"]),
            erased_at=self._opt_read(row["erased_at"]),
        )

    def subscriber_values(self, subscriber: Subscriber, email: str) -> tuple[object, ...]:
        """The values of SUBSCRIBER_COLUMNS for a subscriber saved under `email`."""
        return (
            email,
            dumps(subscriber.fields),
            dumps(sorted(subscriber.groups)),
            self._opt_write(subscriber.created_at),
            subscriber.suppressed,
            self._opt_write(subscriber.suppressed_at),
            self._opt_write(subscriber.deleted_at),
            opt_dumps(subscriber.suppressed_source),
            self._opt_write(subscriber.erased_at),
        )

    def lift_of(self, row: Row) -> SuppressionLift:
        """A row of `suppression_lifts`."""
        return SuppressionLift(
            subscriber_id=row["subscriber_id"],
            lifted_at=self._read(row["lifted_at"]),
            reason=row["reason"],
            suppressed_at=self._opt_read(row["suppressed_at"]),
            source=loads(row["source"]),
            lifted_by=row["lifted_by"],
            note=row["note"],
        )

    def lift_values(self, lift: SuppressionLift) -> tuple[object, ...]:
        """The values of LIFT_COLUMNS for a lift."""
        return (
            lift.subscriber_id,
            self.write_time(lift.lifted_at),
            lift.reason,
            self._opt_write(lift.suppressed_at),
            opt_dumps(lift.source),
            lift.lifted_by,
            lift.note,
        )

    def automation_of(self, row: Row) -> AppliedAutomation:
        """A row of `automations`."""
        return AppliedAutomation(
            id=row["id"],
            revision=row["revision"],
            status=row["status"],
            source=row["source"],
            templates=loads(row["templates"]),
            path=row["path"],
            commit=row["commit_sha"],
            applied_at=self._read(row["applied_at"]),
            started_at=self._opt_read(row["started_at"]),
            stopped_at=self._opt_read(row["stopped_at"]),
        )

    def history_of(self, row: Row) -> HistoryEntry:
        """A row of `history`."""
        return HistoryEntry(
            automation_id=row["automation_id"],
            at=self._read(row["at"]),
            kind=row["kind"],
            previous=loads(row["previous"]),
            value=loads(row["value"]),
            commit=row["commit_sha"],
            detail=row["detail"],
        )

    def entry_of(self, row: Row) -> Entry:
        """A row of `entries`."""
        return Entry(
            automation_id=row["automation_id"],
            subscriber_id=row["subscriber_id"],
            first_at=self._read(row["first_at"]),
            last_at=self._read(row["last_at"]),
            count=row["count"],
        )

    def send_of(self, row: Row) -> PendingSend:
        """A row of `pending_sends`."""
        return PendingSend(
            id=row["id"],
            automation_id=row["automation_id"],
            subscriber_id=row["subscriber_id"],
            email=row["email"],
            due_at=self._read(row["due_at"]),
            status=SendStatus(row["status"]),
            trigger_at=self._read(row["trigger_at"]),
            trigger_event=loads(row["trigger_event"]),
            created_at=self._read(row["created_at"]),
            series_id=row["series_id"],
            repeat_index=row["repeat_index"],
            overrides=loads(row["overrides"]),
            reason=row["reason"],
            attempts=row["attempts"],
            lease_token=row["lease_token"],
            lease_until=self._opt_read(row["lease_until"]),
            updated_at=self._opt_read(row["updated_at"]),
            last_error=row["last_error"],
            skip_window=bool(row["skip_window"]),
            in_flight=loads(row["in_flight"]),
            halted=CancelReason(row["halted"]) if row["halted"] else None,
        )

    def send_values(self, send: PendingSend) -> tuple[object, ...]:
        """The values of SEND_COLUMNS for a send."""
        return self._send_tuple(send, self.write_time, dumps)

    def send_rows(self, sends: Sequence[PendingSend]) -> list[tuple[object, ...]]:
        """`send_values` of many sends; what the sends of one firing share (instants, the
        trigger event) is encoded once."""
        times: dict[datetime, Any] = {}
        texts: dict[int, str] = {}  # by id(): `sends` keeps every value alive meanwhile

        def when(value: datetime) -> Any:
            found = times.get(value)
            if found is None:
                found = times[value] = self.write_time(value)
            return found

        def text(value: object) -> str:
            found = texts.get(id(value))
            if found is None:
                found = texts[id(value)] = dumps(value)
            return found

        return [self._send_tuple(send, when, text) for send in sends]

    def _send_tuple(
        self,
        send: PendingSend,
        when: Callable[[datetime], Any],
        text: Callable[[object], str],
    ) -> tuple[object, ...]:
        return (
            send.id,
            send.automation_id,
            send.subscriber_id,
            send.email,
            when(send.due_at),
            send.status.value,
            when(send.trigger_at),
            text(send.trigger_event),
            when(send.created_at),
            send.series_id,
            send.repeat_index,
            "{}" if not send.overrides else dumps(send.overrides),
            send.reason,
            send.attempts,
            send.lease_token,
            self._opt_write(send.lease_until),
            self._opt_write(send.updated_at),
            send.last_error,
            self.flag(send.skip_window),
            opt_dumps(send.in_flight),
            None if send.halted is None else send.halted.value,
        )

    def message_of(self, row: Row) -> Message:
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
            sent_at=self._read(row["sent_at"]),
            revision=row["revision"],
            listeners=loads(row["listeners"]),
            status=row["status"],
        )

    def message_values(self, message: Message) -> tuple[object, ...]:
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
            self.write_time(message.sent_at),
            message.revision,
            dumps(message.listeners),
            message.status,
        )

    def message_event_of(self, row: Row) -> MessageEvent:
        """A row of `message_events`."""
        return MessageEvent(
            provider=row["provider"],
            provider_event_id=row["provider_event_id"],
            message_id=row["message_id"],
            type=row["type"],
            occurred_at=self._read(row["occurred_at"]),
            received_at=self._read(row["received_at"]),
            url=row["url"],
            bounce=row["bounce"],
        )
