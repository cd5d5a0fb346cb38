"""Entering a subscriber into an automation: retrigger, suppression, re-anchoring of a repeat
series and the pending send, plus the `api` trigger's answers (docs/events.md).

Runs inside a write transaction; `audience` is not evaluated here for event, api and email
triggers (only at send time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runner.core import timing
from runner.core.conditions import evaluate
from runner.core.model import ApiTrigger, Automation, Cooldown, DateTrigger, ScheduleTrigger
from runner.core.records import CancelReason, PendingSend, SendStatus, Subscriber
from runner.engine.catalog import Catalog, Live
from runner.engine.context import EngineContext, new_id, new_ids
from runner.engine.subscribers import normalise_email
from runner.store.base import WriteTx


@dataclass(frozen=True)
class EnterResult:
    """Whether a trigger was accepted, why not, and the pending send it made (if any)."""

    accepted: bool
    reason: str | None = None
    send_id: str | None = None


def enter(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    subscriber: Subscriber,
    trigger_at: datetime,
    event_var: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    *,
    audience_context: Mapping[str, Any] | None = None,
) -> EnterResult:
    """Apply `retrigger`, then suppression, then re-anchor an active repeat series or start a
    new pending send.

    `audience_context`, when given (date and schedule firings), is checked against the
    automation's `audience` first (reason "audience", nothing recorded).
    """
    model = live.model
    if subscriber.id is None:
        raise ValueError("enter() needs a stored subscriber")
    if subscriber.deleted_at is not None:
        return EnterResult(False, CancelReason.DELETED_SUBSCRIBER.value)
    if (
        audience_context is not None
        and model.audience is not None
        and not evaluate(model.audience, audience_context)
    ):
        return EnterResult(False, CancelReason.AUDIENCE.value)
    refused = _admit(tx, model, live.id, subscriber.id, trigger_at)
    if refused is not None:
        return EnterResult(False, refused)

    if subscriber.suppressed is not None:
        send = _new_send(ctx, live, subscriber, trigger_at, event_var, overrides)
        send = _cancelled(send, CancelReason.SUPPRESSED)
        tx.insert_pending(send)
        return EnterResult(False, CancelReason.SUPPRESSED.value, send.id)

    if _in_series(model):
        active = tx.active_sends(subscriber.id, live.id)
        if active:
            return _reanchor(tx, ctx, live, subscriber, active, trigger_at, event_var, overrides)
    send = _new_send(ctx, live, subscriber, trigger_at, event_var, overrides)
    tx.insert_pending(send)
    return EnterResult(True, None, send.id)


def enter_firing(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    subscribers: Sequence[Subscriber],
    trigger_at: datetime,
    event_var: dict[str, Any],
) -> int:
    """`enter` for many subscribers at one date or schedule firing, their audience already
    checked: neither `retrigger` nor a repeat series applies to these triggers, so each gets
    its entry and a new pending send (cancelled at once when suppressed), written with one
    statement each. The number accepted."""
    if not isinstance(live.model.trigger, DateTrigger | ScheduleTrigger):
        raise ValueError(f"{live.id!r} is not a date or schedule automation")
    sends: list[PendingSend] = []
    ids = iter(new_ids(trigger_at, len(subscribers)))
    for subscriber in subscribers:
        if subscriber.id is None:
            raise ValueError("enter_firing() needs stored subscribers")
        if subscriber.deleted_at is not None:
            continue
        send = _new_send(ctx, live, subscriber, trigger_at, event_var, None, send_id=next(ids))
        if subscriber.suppressed is not None:
            send = _cancelled(send, CancelReason.SUPPRESSED)
        sends.append(send)
    tx.record_entries(live.id, [send.subscriber_id for send in sends], trigger_at)
    tx.insert_pendings(sends)
    return sum(send.status is SendStatus.PENDING for send in sends)


def enter_firing_rows(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    rows: Sequence[tuple[int, str, dict[str, Any] | None]],
    trigger_at: datetime,
    event_var: dict[str, Any],
) -> int:
    """`enter_firing` for live, unsuppressed subscribers given as (id, email, fields), their
    audience already checked: the same entries and sends, written without building a send
    per subscriber. `fields` is read only when the send window is in the subscriber's zone
    (`needs_fields`); otherwise it may be None. The number accepted."""
    if not isinstance(live.model.trigger, DateTrigger | ScheduleTrigger):
        raise ValueError(f"{live.id!r} is not a date or schedule automation")
    if not rows:
        return 0
    ids = new_ids(trigger_at, len(rows))
    first = Subscriber(rows[0][0], rows[0][1], rows[0][2] or {})
    template = _new_send(ctx, live, first, trigger_at, event_var, None, send_id=ids[0])
    if needs_fields(live):
        dues: dict[object, datetime] = {}

        def due_of(fields: dict[str, Any] | None) -> datetime:
            key = (fields or {}).get("timezone")
            key = key if isinstance(key, str) else None
            found = dues.get(key)
            if found is None:
                person = Subscriber(first.id, first.email, fields or {})
                found = dues[key] = _new_send(ctx, live, person, trigger_at, event_var, None).due_at
            return found

        varying = [(i, s, e, due_of(f)) for i, (s, e, f) in zip(ids, rows, strict=True)]
    else:
        due = template.due_at
        varying = [(i, s, e, due) for i, (s, e, _) in zip(ids, rows, strict=True)]
    tx.record_entries(live.id, [row[0] for row in rows], trigger_at)
    tx.insert_pendings_like(template, varying)
    return len(rows)


def firing_template(
    ctx: EngineContext, live: Live, trigger_at: datetime, event_var: dict[str, Any]
) -> PendingSend:
    """The send every subscriber of a firing gets when its due time is the same for all
    (not `needs_fields`), but for its id, subscriber and email, which the store fills in."""
    if needs_fields(live):
        raise ValueError(f"{live.id!r} sends in each subscriber's zone")
    nobody = Subscriber(0, "", {})
    return _new_send(ctx, live, nobody, trigger_at, event_var, None, send_id=new_id(trigger_at))


def needs_fields(live: Live) -> bool:
    """Whether a send's due time depends on the subscriber (a window in their zone)."""
    window = live.model.send_window
    return window is not None and window.timezone == "subscriber"


def api_trigger(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    automation_id: str,
    email: str,
    data: dict[str, Any],
    now: datetime,
) -> EnterResult:
    """The `api` trigger for one subscriber at `now` (the server answers 404/409 itself).

    `data` becomes `event.data` and the send's `overrides` (overlaid on the subscriber's fields
    for its audience check and rendering at send time; never stored on the subscriber).
    """
    live = catalog.by_id.get(automation_id)
    if live is None or not isinstance(live.model.trigger, ApiTrigger):
        raise ValueError(f"{automation_id!r} is not an applied automation with an api trigger")
    if not live.running_at(now):
        return EnterResult(False, "not_running")
    try:
        subscriber = tx.subscriber(normalise_email(email))
    except ValueError:
        subscriber = None
    if subscriber is None or subscriber.deleted_at is not None:
        return EnterResult(False, "not_a_subscriber")
    event_var = {"name": "api", "data": dict(data)}
    return enter(tx, ctx, live, subscriber, now, event_var, dict(data))


def _in_series(model: Automation) -> bool:
    """Whether a new trigger re-anchors the subscriber's active sends instead of adding one.

    Only a `repeat` series is re-anchored: without it every accepted trigger is its own email
    (two orders an hour apart get two follow-ups). Date and schedule firings are deduplicated
    by the scheduler (once per year or tick) and each firing is its own series.
    """
    return model.repeat is not None and not isinstance(model.trigger, DateTrigger | ScheduleTrigger)


def _admit(
    tx: WriteTx, model: Automation, automation_id: str, subscriber_id: int, at: datetime
) -> str | None:
    """Apply `retrigger` and record the entry it admits; the refusal's reason, if any."""
    if model.retrigger is False and not isinstance(model.trigger, DateTrigger | ScheduleTrigger):
        # Once only: the insert of the first entry is the check (no read, no read-back).
        return None if tx.enter_first(automation_id, subscriber_id, at) else "already_entered"
    if isinstance(model.retrigger, Cooldown) and not isinstance(
        model.trigger, DateTrigger | ScheduleTrigger
    ):
        entry = tx.entry(automation_id, subscriber_id)
        if entry is not None and at - entry.last_at < timedelta(seconds=model.retrigger.cooldown):
            return "cooldown"
    tx.record_entries(automation_id, [subscriber_id], at)
    return None


def _reanchor(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    subscriber: Subscriber,
    active: list[PendingSend],
    anchor: datetime,
    event_var: dict[str, Any],
    overrides: dict[str, Any] | None,
) -> EnterResult:
    """Move the outstanding send of the series to the new anchor (same repeat index)."""
    moved: str | None = None
    for send in active:
        cancelled = tx.set_status(
            [send.id],
            SendStatus.CANCELLED,
            anchor,
            from_statuses={SendStatus.PENDING},
            reason=CancelReason.REANCHORED.value,
        )
        if cancelled:
            again = _new_send(ctx, live, subscriber, anchor, event_var, overrides, series_of=send)
            tx.insert_pending(again)
            moved = moved or again.id
    # A CLAIMED send is being handed to the provider right now: its series goes on from the
    # old anchor (the sender creates the next repeat), so the new trigger changes nothing.
    return EnterResult(True, None, moved or active[0].id)


def _new_send(
    ctx: EngineContext,
    live: Live,
    subscriber: Subscriber,
    anchor: datetime,
    event_var: dict[str, Any],
    overrides: dict[str, Any] | None,
    *,
    series_of: PendingSend | None = None,
    send_id: str | None = None,
) -> PendingSend:
    """A pending send from `anchor`: a new series, or the same place in `series_of`'s series."""
    repeat_index = series_of.repeat_index if series_of is not None else 0
    model = live.model
    window = model.send_window
    zone = (
        timing.zone_for(window.timezone, subscriber.fields, ctx.default_timezone)
        if window is not None
        else ZoneInfo("UTC")
    )
    every = model.repeat.every if model.repeat is not None else 0
    due = timing.repeat_due(anchor, model.wait, every, repeat_index, window, zone)
    send_id = send_id or new_id(anchor)
    assert subscriber.id is not None
    return PendingSend(
        id=send_id,
        automation_id=live.id,
        subscriber_id=subscriber.id,
        email=subscriber.email,
        due_at=due,
        status=SendStatus.PENDING,
        trigger_at=anchor,
        trigger_event=event_var,
        created_at=anchor,
        series_id=series_of.series_id if series_of is not None else send_id,
        repeat_index=repeat_index,
        overrides=dict(overrides or {}),
    )


def _cancelled(send: PendingSend, reason: CancelReason) -> PendingSend:
    return replace(
        send, status=SendStatus.CANCELLED, reason=reason.value, updated_at=send.created_at
    )
