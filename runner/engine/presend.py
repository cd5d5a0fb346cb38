"""The checks just before sending: cancel, reschedule, or let a send go."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runner.core import conditions, timing
from runner.core.model import Automation
from runner.core.records import CancelReason, PendingSend, SendStatus, Subscriber
from runner.engine.catalog import Catalog, Live
from runner.engine.context import EngineContext
from runner.engine.outcomes import Ready, cancel, zone
from runner.store.base import WriteTx

log = logging.getLogger("runner.engine.sender")

# Effective statuses in which a send that was already attempted may still be retried.
_RETRY_STATUSES = frozenset({"running", "paused"})
_STATUS_REASONS = {
    "paused": CancelReason.PAUSED,
    "stopped": CancelReason.STOPPED,
    "deleted": CancelReason.DELETED,
}


def check(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    send: PendingSend,
    token: str,
    now: datetime,
    subscribers: Mapping[int, Subscriber],
) -> Ready | None:
    """Cancel, reschedule, or hand back a send ready to render (None: nothing to send).

    `send` is the row as read in this very transaction (at its claim, or again since).
    `subscribers` holds its subscriber unless that no longer exists (read with the round's).
    """
    current = send
    if current.status != SendStatus.CLAIMED or current.lease_token != token:
        return None  # taken over or cancelled since the claim
    if current.halted is not None:  # a retry not made yet when its automation stopped
        cancel(tx, None, ctx, current, token, now, current.halted, None)
        return None
    live = catalog.by_id.get(send.automation_id)
    if live is None:
        cancel(tx, None, ctx, current, token, now, CancelReason.DELETED, None)
        return None
    subscriber = subscribers.get(current.subscriber_id)
    reason = _cancel_reason(tx, live, current, subscriber, now)
    if reason is not None:
        cancel(tx, live, ctx, current, token, now, reason, subscriber)
        return None
    assert subscriber is not None  # _cancel_reason refuses a missing subscriber
    window = live.model.send_window
    if window is not None and not current.skip_window:  # "send now" skips the window
        where = zone(live.model, subscriber, ctx)
        if not timing.in_window(now, window, where):
            # A late send waits for the next opening, without counting an attempt.
            opening = timing.next_opening(now, window, where)
            if not tx.reschedule(current.id, opening, now, token=token):
                log.warning("send %s: lease lost before its window wait was recorded", send.id)
            return None
    return Ready(current, live, subscriber)


def _cancel_reason(
    tx: WriteTx, live: Live, send: PendingSend, subscriber: Subscriber | None, now: datetime
) -> CancelReason | None:
    """The first check `send` fails, in the order they are made; None when it passes all."""
    if send.attempts > 0:
        # A retry skips the pause check; a stop or delete still ends it.
        for instant in (send.due_at, now):
            status = live.status_at(instant)
            if status not in _RETRY_STATUSES:
                return _STATUS_REASONS.get(status or "", CancelReason.NOT_RUNNING)
    else:
        for instant in (send.due_at, now):
            if not live.running_at(instant):
                status = live.status_at(instant) or ""
                return _STATUS_REASONS.get(status, CancelReason.NOT_RUNNING)
    if subscriber is None or subscriber.deleted_at is not None:
        return CancelReason.DELETED_SUBSCRIBER
    if subscriber.suppressed is not None:
        return CancelReason.SUPPRESSED
    model = live.model
    if model.audience is not None:
        context = {
            "subscriber": subscriber_context(subscriber, send.overrides),
            "event": send.trigger_event,
        }
        if not conditions.evaluate(model.audience, context):
            return CancelReason.AUDIENCE
    if model.exit_on and _exited(tx, model, send, subscriber):
        return CancelReason.EXIT_ON
    return None


def _exited(tx: WriteTx, model: Automation, send: PendingSend, subscriber: Subscriber) -> bool:
    names = {exit_on.event for exit_on in model.exit_on}
    person = subscriber_context(subscriber, None)
    for event in tx.events_after(subscriber.email, names, send.trigger_at):
        context = {
            "subscriber": person,
            "event": {
                "name": event.type,
                "data": event.data,
                "occurred_at": (event.occurred_at or event.received_at).isoformat(),
            },
        }
        for exit_on in model.exit_on:
            if exit_on.event == event.type and (
                exit_on.where is None or conditions.evaluate(exit_on.where, context)
            ):
                return True
    return False


def subscriber_context(
    subscriber: Subscriber, overrides: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The `subscriber` of a condition context, with api trigger data overlaid on fields."""
    return {
        "email": subscriber.email,
        "fields": {**subscriber.fields, **(overrides or {})},
        "groups": sorted(subscriber.groups),
    }
