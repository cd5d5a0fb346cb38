"""Processing received events in seq order (docs/events.md): subscriber upserts, derived
events, `exit_on` cancellation, and event and email trigger matching with gating.

This is the hot path: each event costs one subscriber write (a batch's subscribers are read
at once), one index lookup per derived event, and store reads only when an automation
actually listens.
"""

from __future__ import annotations

import logging
from collections.abc import Set as AbstractSet
from typing import Any

from runner.core.conditions import evaluate
from runner.core.model import EmailAction, EmailTrigger, EventTrigger
from runner.core.records import CancelReason, SendStatus, StoredEvent, Subscriber
from runner.engine.catalog import Catalog, Live
from runner.engine.context import EngineContext
from runner.engine.entering import enter
from runner.engine.isolated import apply_isolated
from runner.engine.subscribers import DELETED, apply_event, normalise_email
from runner.store.base import WriteTx

EMAIL_EVENTS = frozenset(
    f"email.{action}" for action in ("sent", "delivered", "opened", "clicked", "failed")
)

log = logging.getLogger(__name__)


def process_pending(tx: WriteTx, catalog: Catalog, ctx: EngineContext, limit: int = 500) -> int:
    """Process up to `limit` unprocessed events in seq order; returns how many."""
    tx.lock_engine()  # replicas on one database take turns: events stay in seq order
    events = tx.unprocessed_events(limit)
    known = _BatchSubscribers(tx, events)

    def process(event: StoredEvent) -> None:
        if event.id is None and event.type in EMAIL_EVENTS:
            _internal(tx, catalog, ctx, event, known)
        else:
            _received(tx, catalog, ctx, event, known)

    def failed(event: StoredEvent, error: Exception) -> None:
        # A bad event must not block the queue forever; its own work is undone.
        log.exception("event %d (%s) failed and is skipped", event.seq, event.type)
        tx.mark_failed(event.seq, f"{type(error).__name__}: {error}")

    apply_isolated(tx, events, process, failed)
    if events:
        tx.mark_processed([event.seq for event in events])
    return len(events)


class _BatchSubscribers:
    """The subscribers of a batch's emails as they were before the batch, read at once.

    Only the first event of an email in the batch is given that snapshot: a later one must
    see what the earlier ones wrote, so it reads the store. A batch applied again after a
    failure (apply_isolated) starts from the snapshot's state again, so it stays right.
    """

    def __init__(self, tx: WriteTx, events: list[StoredEvent]) -> None:
        self._tx = tx
        self._first: dict[str, int] = {}  # email -> seq of its first event in the batch
        for event in events:
            try:
                self._first.setdefault(normalise_email(event.email), event.seq)
            except ValueError:
                continue
        self._before = tx.subscribers_by_emails(self._first) if self._first else {}

    def get(self, email: str, event: StoredEvent) -> Subscriber | None:
        """The subscriber of normalised `email` as `event`'s processing must see it."""
        if self._first.get(email) == event.seq:
            return self._before.get(email)
        return self._tx.subscriber(email)


def _received(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    event: StoredEvent,
    known: _BatchSubscribers,
) -> None:
    try:
        email = normalise_email(event.email)
    except ValueError:  # the API refuses these; a bad row must not stop the queue
        return
    existing = known.get(email, event)
    if existing is None and event.type == DELETED:
        return  # nothing to erase: deleting an unknown email creates nobody
    update = apply_event(existing, event)
    subscriber = tx.save_subscriber(update.subscriber)
    made: set[str] = set()  # sends triggered by this event's derived events: never its exits
    for name, data in update.derived:
        derived = tx.add_event(
            name, email, data, event.received_at, derived_from=event.seq, processed=True
        )
        made |= _handle(tx, catalog, ctx, derived, subscriber, made)
    if update.fires:
        _handle(tx, catalog, ctx, event, subscriber, made)


def _internal(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    event: StoredEvent,
    known: _BatchSubscribers,
) -> None:
    """An `email.<action>` event recorded from provider feedback or by the sender."""
    try:
        subscriber = known.get(normalise_email(event.email), event)
    except ValueError:
        return
    if subscriber is None or subscriber.deleted_at is not None:
        return
    _handle(tx, catalog, ctx, event, subscriber)


def _context(event: StoredEvent, subscriber: Subscriber) -> dict[str, Any]:
    occurred = event.occurred_at or event.received_at
    return {
        "subscriber": {
            "email": subscriber.email,
            "fields": subscriber.fields,
            "groups": sorted(subscriber.groups),
        },
        "event": {"name": event.type, "data": event.data, "occurred_at": occurred.isoformat()},
    }


def _handle(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    event: StoredEvent,
    subscriber: Subscriber,
    own: AbstractSet[str] = frozenset(),
) -> set[str]:
    """Exits, then triggers, of one event; returns the ids of the sends its triggers made.

    `own`: sends made by events derived from the same received event, which its exits spare.
    """
    made: set[str] = set()
    context: dict[str, Any] | None = None
    exits = catalog.by_exit_event.get(event.type)
    if exits:
        context = _context(event, subscriber)
        _exit_on(tx, exits, event, subscriber, context, own)
    if event.type == DELETED:
        if subscriber.id is not None:  # a request in flight completes and is recorded
            tx.end_subscriber_sends(
                subscriber.id, CancelReason.DELETED_SUBSCRIBER, event.received_at
            )
        return made
    if subscriber.deleted_at is not None:
        return made
    if event.type in EMAIL_EVENTS and event.id is None:
        _email_triggers(tx, catalog, ctx, event, subscriber)
        return made
    for live in catalog.by_event.get(event.type, ()):
        trigger = live.model.trigger
        if not isinstance(trigger, EventTrigger):
            continue
        if trigger.group is not None and event.data.get("group") != trigger.group:
            continue
        if not live.running_at(event.received_at):
            continue
        context = context or _context(event, subscriber)
        if trigger.where is not None and not evaluate(trigger.where, context):
            continue
        result = enter(tx, ctx, live, subscriber, event.received_at, dict(context["event"]))
        if result.send_id is not None:
            made.add(result.send_id)
    return made


def _exit_on(
    tx: WriteTx,
    exits: list[Live],
    event: StoredEvent,
    subscriber: Subscriber,
    context: dict[str, Any],
    own: AbstractSet[str],
) -> None:
    """Cancel this subscriber's pending sends whose automation exits on `event`."""
    if subscriber.id is None:
        return
    listening = {live.id: live for live in exits}
    matches: dict[str, bool] = {}
    cancel: list[str] = []
    for send in tx.active_sends(subscriber.id):
        live = listening.get(send.automation_id)
        # Exits run before this event's own triggers, so a send triggered at the same instant
        # came from an earlier event of the same commit (a batch) and is exited, unless one
        # derived from this very event triggered it.
        if live is None or send.trigger_at > event.received_at or send.id in own:
            continue
        if live.id not in matches:
            matches[live.id] = any(
                exit_on.event == event.type
                and (exit_on.where is None or evaluate(exit_on.where, context))
                for exit_on in live.model.exit_on
            )
        if matches[live.id]:
            cancel.append(send.id)
    if cancel:
        tx.set_status(
            cancel,
            SendStatus.CANCELLED,
            event.received_at,
            from_statuses={SendStatus.PENDING},
            reason=CancelReason.EXIT_ON.value,
        )


def _email_triggers(
    tx: WriteTx, catalog: Catalog, ctx: EngineContext, event: StoredEvent, subscriber: Subscriber
) -> None:
    """Match an internal `email.<action>` event against `email` triggers.

    Every provider event is a trigger of its own (a second open, a second click on the same
    link), and every click also fires `opened` listeners, since a click counts as an open; the
    listener's `retrigger` decides whether it enters again (docs/events.md).
    """
    source = event.data.get("automation")
    lives = catalog.by_source.get(source, ()) if isinstance(source, str) else ()
    if not lives:
        return
    action = event.type.removeprefix("email.")
    message_id = event.data.get("message_id")
    message = tx.message(message_id) if isinstance(message_id, str) else None
    if message is None:
        return
    for live in lives:
        trigger = live.model.trigger
        if not isinstance(trigger, EmailTrigger) or live.id not in message.listeners:
            continue
        if not _fires(trigger, action, event.data.get("link")):
            continue
        if not live.running_at(event.received_at):
            continue
        event_var = {"name": f"email.{trigger.action.value}", "data": dict(event.data)}
        enter(tx, ctx, live, subscriber, event.received_at, event_var)


def _fires(trigger: EmailTrigger, action: str, link: object) -> bool:
    """Whether an email event of `action` (with the clicked `link`, if any) fires `trigger`."""
    if trigger.action is EmailAction.OPENED:
        return action in (EmailAction.OPENED.value, EmailAction.CLICKED.value)
    return trigger.action.value == action and trigger.matches_link(link)
