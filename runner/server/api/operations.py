"""Operations on applied automations shared by the HTTP API and the CLI, and their JSON forms."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from runner.core.records import CancelReason, HistoryEntry, Message, PendingSend, SendStatus
from runner.engine.catalog import Live
from runner.engine.erasure import erased
from runner.server.api.base import iso
from runner.server.api.models import RequestError
from runner.store.base import ReadTx, Stats, WriteTx
from runner.store.dashboard_stats import RevisionStats

ACTIVE = (SendStatus.PENDING, SendStatus.CLAIMED)
NOT_STARTED = frozenset({"draft", "scheduled"})


def stats_payload(stats: Stats) -> dict[str, Any]:
    """The JSON form of an automation's counts, with rates."""
    payload = dataclasses.asdict(stats)
    payload["open_rate"] = stats.open_rate
    payload["click_rate"] = stats.click_rate
    return payload


def revisions_payload(found: list[RevisionStats]) -> list[dict[str, Any]]:
    """The JSON form of stats by revision, oldest revision first."""
    return [
        {
            "revision": item.revision,
            "commit": item.commit,
            "subject": item.subject,
            "applied_at": iso(item.applied_at),
            **dataclasses.asdict(item.counts),
            "delivery_rate": item.counts.delivery_rate,
            "open_rate": item.counts.open_rate,
            "click_rate": item.counts.click_rate,
        }
        for item in found
    ]


def started(live: Live) -> bool:
    """Whether the automation was ever running (stats exist only then)."""
    return live.row.started_at is not None or any(s not in NOT_STARTED for s in live.statuses)


def send_payload(send: PendingSend) -> dict[str, Any]:
    """The JSON form of a pending send."""
    return {
        "id": send.id,
        "automation": send.automation_id,
        "email": send.email,
        "status": send.status.value,
        "due_at": iso(send.due_at),
        "trigger_at": iso(send.trigger_at),
        "created_at": iso(send.created_at),
        "series_id": send.series_id,
        "repeat_index": send.repeat_index,
        "reason": send.reason,
        "attempts": send.attempts,
        "last_error": send.last_error,
    }


def message_payload(message: Message) -> dict[str, Any]:
    """The JSON form of a stored message."""
    return {
        "id": message.id,
        "pending_send_id": message.pending_send_id,
        "automation": message.automation_id,
        "to": message.to,
        "from": message.from_,
        "subject": message.subject,
        "html": message.html,
        "text": message.text,
        "headers": message.headers,
        "provider": message.provider,
        "sent_at": iso(message.sent_at),
        "status": message.status,
        "listeners": message.listeners,
        "erased": erased(message),  # the recipient asked to be forgotten: scrubbed
    }


def outbox(tx: ReadTx, limit: int, automation_id: str | None = None) -> list[Message]:
    """Messages of outbox providers, newest first."""
    return [m for m in tx.messages(limit, automation_id) if m.provider_type == "outbox"]


def send_now(tx: WriteTx, automation_id: str, send_id: str, now: datetime) -> PendingSend:
    """Make a pending send due now (the window is skipped, every other check applies)."""
    send = _own_send(tx, automation_id, send_id)
    if send.status is not SendStatus.PENDING or not tx.send_now(send_id, now):
        raise RequestError(409, _not_pending(send))
    tx.add_history(
        HistoryEntry(automation_id, now, "pending", iso(send.due_at), "send_now", detail=send_id)
    )
    return tx.pending_send(send_id) or send


def remove_pending(tx: WriteTx, automation_id: str, send_id: str, now: datetime) -> PendingSend:
    """Cancel a pending send with reason `removed` (ends its series)."""
    send = _own_send(tx, automation_id, send_id)
    reason = CancelReason.REMOVED.value
    pending = {SendStatus.PENDING}
    if not tx.set_status(
        [send_id], SendStatus.CANCELLED, now, from_statuses=pending, reason=reason
    ):
        raise RequestError(409, _not_pending(send))
    tx.add_history(
        HistoryEntry(automation_id, now, "pending", send.status.value, "removed", detail=send_id)
    )
    return tx.pending_send(send_id) or send


def _own_send(tx: ReadTx, automation_id: str, send_id: str) -> PendingSend:
    send = tx.pending_send(send_id)
    if send is None or send.automation_id != automation_id:
        message = f"no pending send {send_id!r} in automation {automation_id!r}"
        raise RequestError(404, {"error": "unknown_send", "field": "send_id", "message": message})
    return send


def _not_pending(send: PendingSend) -> dict[str, Any]:
    return {
        "error": "not_pending",
        "field": "send_id",
        "status": send.status.value,
        "message": f"send {send.id} is {send.status.value}, not pending",
    }


def history_payload(entry: HistoryEntry) -> dict[str, Any]:
    """The JSON form of a history entry."""
    return {
        "at": iso(entry.at),
        "kind": entry.kind,
        "previous": entry.previous,
        "value": entry.value,
        "commit": entry.commit,
        "detail": entry.detail,
    }
