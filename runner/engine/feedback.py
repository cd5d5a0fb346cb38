"""Provider feedback about sent messages: stored once, then its effects (docs/events.md).

A provider event is deduplicated by its provider event id, and by nothing else. Its effects:
hard bounces, complaints and unsubscribes suppress the subscriber; a hard bounce marks the
message bounced; every delivery, open, click and bounce (hard or soft) becomes one INTERNAL
event (`email.delivered|opened|clicked|failed`) that the event processor matches against
`email` triggers at its receipt time, like any other event. Stats count messages, not these
events, so a second open never counts twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from runner.core.records import Message, MessageEvent, SendStatus
from runner.engine import suppression
from runner.engine.catalog import Catalog
from runner.engine.erasure import erased
from runner.engine.outcomes import catalog_current
from runner.store.base import WriteTx

log = logging.getLogger(__name__)

STORED = "stored"
DUPLICATE = "duplicate"
UNKNOWN_MESSAGE = "unknown_message"
_SUPPRESSING = {"complained": "complained", "unsubscribed": "unsubscribed"}
_ENGAGEMENT = frozenset({"delivered", "opened", "clicked"})

OUTCOME_UNKNOWN = "outcome_unknown"


def record_provider_event(tx: WriteTx, catalog: Catalog, provider: str, event: MessageEvent) -> str:
    """Store one provider event and apply its effects: "stored", "duplicate" or "unknown_message".

    `event.message_id` may be our message id or the provider's id for the message; the
    stored event always names our id. An event for a message we never sent is not stored.
    The internal event it raises is stored already processed when `catalog` shows no
    automation listening to it (runner.engine.outcomes.internal_event).
    """
    lock_for(tx, [event])
    message = tx.message(event.message_id)
    if message is None or message.provider != provider:
        message = tx.message_by_provider_id(provider, event.message_id)
    if message is None:
        log.warning("provider %s: event %s for unknown message", provider, event.provider_event_id)
        return UNKNOWN_MESSAGE
    stored = dataclasses.replace(event, provider=provider, message_id=message.id)
    if erased(message):  # a clicked link may carry the erased address: only the count stays
        stored = dataclasses.replace(stored, url=None)
    if not tx.insert_message_event(stored):
        return DUPLICATE
    if message.status == OUTCOME_UNKNOWN:
        _reconcile(tx, catalog, message, stored)
    _apply(tx, catalog, message, stored)
    return STORED


def suppresses(event: MessageEvent) -> bool:
    """Whether `event` suppresses its recipient (a hard bounce, a complaint, an unsubscribe)."""
    return is_hard_bounce(event) or event.type in _SUPPRESSING


def lock_for(tx: WriteTx, events: Iterable[MessageEvent]) -> None:
    """Take the engine lock when one of `events` will suppress its recipient
    (runner.engine.suppression.suppress); callers recording several events call this
    before any write of the transaction."""
    if any(suppresses(event) for event in events):
        tx.lock_engine()


def _reconcile(tx: WriteTx, catalog: Catalog, message: Message, event: MessageEvent) -> None:
    """A send whose request timed out reached the provider after all: it was sent."""
    tx.set_status(
        [message.pending_send_id],
        SendStatus.SENT,
        event.received_at,
        from_statuses={SendStatus.OUTCOME_UNKNOWN},
    )
    tx.set_message_status(message.id, "sent")
    _internal(tx, catalog, "email.sent", message, event)


def is_hard_bounce(event: MessageEvent) -> bool:
    """A bounce without a kind counts as hard, as in the stats."""
    return event.type == "bounced" and (event.bounce or "hard") == "hard"


def _apply(tx: WriteTx, catalog: Catalog, message: Message, event: MessageEvent) -> None:
    if event.type == "bounced":
        if is_hard_bounce(event):
            _suppress(tx, message, "bounced", event)
            tx.set_message_status(message.id, "bounced")
        # A soft bounce neither suppresses nor ends the message, but it is a failure to deliver.
        _internal(tx, catalog, "email.failed", message, event)
        return
    if event.type in _SUPPRESSING:
        _suppress(tx, message, _SUPPRESSING[event.type], event)
        return
    if event.type not in _ENGAGEMENT:
        log.info("provider event type %r of message %s has no effect", event.type, message.id)
        return
    if event.type == "delivered" and message.provider_type == "outbox":
        return  # the outbox reports no deliveries: its messages counted delivered when sent
    _internal(tx, catalog, f"email.{event.type}", message, event)


def _suppress(tx: WriteTx, message: Message, reason: str, event: MessageEvent) -> None:
    """Suppress the recipient; the first reason stays (only the API lifts it)."""
    source = suppression.from_provider_event(event.provider, event)
    suppression.suppress(tx, message.subscriber_id, reason, event.received_at, source)


def _internal(
    tx: WriteTx, catalog: Catalog, name: str, message: Message, event: MessageEvent
) -> None:
    """Store `name` of `message`: processed at once when no automation listens to it and no
    reload committed since `catalog` was built (processing would find nothing to do)."""
    data: dict[str, object] = {
        "automation": message.automation_id,
        "message_id": message.id,
        "sent_at": message.sent_at.isoformat(),
    }
    if name == "email.clicked" and event.url is not None:
        data["link"] = event.url
    heard = catalog.listens_to_email_event(name, message.automation_id) or not catalog_current(
        tx, catalog
    )
    tx.add_event(name, message.to, data, event.received_at, processed=not heard)
