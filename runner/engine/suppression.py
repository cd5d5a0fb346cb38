"""Where a suppression came from, and lifting one through the subscribers API.

A subscriber is suppressed by an `subscriber.unsubscribed` event, a one-click unsubscribe
link, a provider's bounce, complaint or unsubscribe report, or a provider refusing the
address for good; the source says which (shown next to the reason and time). Only hard
bounces and complaints (and other provider verdicts) are lifted here: an unsubscribe is the
person's own choice, lifted only by their `subscriber.resubscribed` event (docs/subscribers.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from runner.core.records import MessageEvent, StoredEvent, Subscriber, SuppressionLift
from runner.store.base import WriteTx

UNSUBSCRIBED = "unsubscribed"
# Provider event ids of one-click unsubscribes (POST /u/{token}): one per message.
UNSUBSCRIBE_LINK_PREFIX = "unsubscribe-link:"


def from_event(event: StoredEvent) -> dict[str, Any]:
    """The source of a suppression made by a received event."""
    return {"kind": "event", "event_type": event.type, "event_id": event.id, "seq": event.seq}


def from_provider_event(provider: str, event: MessageEvent) -> dict[str, Any]:
    """The source of a suppression made by a provider report or an unsubscribe link."""
    if event.provider_event_id.startswith(UNSUBSCRIBE_LINK_PREFIX):
        return {"kind": "unsubscribe_link", "message_id": event.message_id}
    return {
        "kind": "provider_webhook",
        "provider": provider,
        "event_type": event.type,
        "event_id": event.provider_event_id,
        "message_id": event.message_id,
    }


def from_refused_send(provider: str, send_id: str) -> dict[str, Any]:
    """The source of a suppression made when a provider refused the address for good (its
    error text is left out: it often quotes the address)."""
    return {"kind": "provider_refused", "provider": provider, "send_id": send_id}


def suppress(
    tx: WriteTx, subscriber_id: int, reason: str, at: datetime, source: dict[str, Any]
) -> bool:
    """Suppress a subscriber for a provider's verdict (the first reason stays); False when
    they were suppressed or deleted already.

    Event processing reads, changes and saves subscribers under the engine lock, so this
    takes it too: without it a suppression committed between the processor's read and
    save would be overwritten, or would overwrite what the processor changed. Take it
    before the transaction's other writes (the engine lock first, then rows), so a wait
    for it never holds rows the engine needs.
    """
    tx.lock_engine()
    current = tx.subscriber_by_id(subscriber_id)
    if current is None or current.deleted_at is not None or current.suppressed is not None:
        return False
    current.suppressed = reason
    current.suppressed_at = at
    current.suppressed_source = source
    tx.save_subscriber(current)
    return True


class LiftOutcome(StrEnum):
    """What a lift request found."""

    LIFTED = "lifted"
    NOT_SUPPRESSED = "not_suppressed"
    UNSUBSCRIBED = "unsubscribed"  # refused: only a resubscribe lifts it
    UNKNOWN = "unknown_subscriber"


@dataclass(frozen=True)
class LiftResult:
    """The outcome, the subscriber afterwards (None when unknown) and the lift recorded."""

    outcome: LiftOutcome
    subscriber: Subscriber | None
    lift: SuppressionLift | None = None


def lift(tx: WriteTx, email: str, by: str, note: str | None, now: datetime) -> LiftResult:
    """Lift a hard-bounce or complaint suppression of `email`, recording who and why."""
    # Event processing reads, changes and saves subscribers under this lock: taking it keeps
    # a concurrent event from saving the suppression back over the lift.
    tx.lock_engine()
    current = tx.subscriber(email)
    if current is None or current.deleted_at is not None or current.id is None:
        return LiftResult(LiftOutcome.UNKNOWN, None)
    if current.suppressed is None:
        return LiftResult(LiftOutcome.NOT_SUPPRESSED, current)
    if current.suppressed == UNSUBSCRIBED:
        return LiftResult(LiftOutcome.UNSUBSCRIBED, current)
    record = SuppressionLift(
        subscriber_id=current.id,
        lifted_at=now,
        reason=current.suppressed,
        suppressed_at=current.suppressed_at,
        source=current.suppressed_source,
        lifted_by=by,
        note=note,
    )
    tx.add_suppression_lift(record)
    current.suppressed = None
    current.suppressed_at = None
    current.suppressed_source = None
    return LiftResult(LiftOutcome.LIFTED, tx.save_subscriber(current), record)
