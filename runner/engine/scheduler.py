"""The engine's time-driven work: scheduled starts and `stop_at` stops, date and schedule
firings (sweeps.py), and `not_opened` / `not_clicked` checks at sent time + `within`.

`tick` runs inside one write transaction and is called often, so every step is bounded and
idempotent: progress is kept in meta (per automation) and each firing is claimed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runner.core.model import DateTrigger, EmailAction, EmailTrigger, ScheduleTrigger, Status
from runner.core.records import Message
from runner.engine.catalog import DELETED, Catalog, Live, ran_during
from runner.engine.context import EngineContext
from runner.engine.cursors import Budget, load_cursor, save_cursor
from runner.engine.entering import enter
from runner.engine.status_changes import advance_lifecycle
from runner.engine.sweeps import date_sweep, schedule_sweep
from runner.store.base import ReadTx, WriteTx

# Subscribers handled per tick, over every date/schedule automation: a tick is one write
# transaction, so this bounds how long it holds the single writer; an unfinished sweep asks
# for the next tick at once (TickResult.more), so the bound costs little throughput.
SUBSCRIBER_BUDGET = 20_000
# The worker's ticks also stop starting pages after this long (seconds), so one stays short
# whatever the audience, the machine or the other automations cost.
TICK_SECONDS = 0.05
_NEGATIVE = (EmailAction.NOT_OPENED, EmailAction.NOT_CLICKED)
_STOPPED = Status.STOPPED.value


@dataclass(frozen=True)
class TickResult:
    """What a tick did: status history changed; subscribers handled; a sweep is unfinished;
    skipped because another replica held the engine lock (only when not waiting for it)."""

    changed: bool
    handled: int
    more: bool
    skipped: bool = False


def tick(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    now: datetime,
    *,
    budget: int = SUBSCRIBER_BUDGET,
) -> bool:
    """One round of time-driven work at `now`; True when status history changed."""
    return run_tick(tx, catalog, ctx, now, budget=budget).changed


def run_tick(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    now: datetime,
    *,
    budget: int = SUBSCRIBER_BUDGET,
    seconds: float | None = None,
    wait: bool = True,
) -> TickResult:
    """One round of time-driven work at `now`, saying whether more is waiting; sweeps start
    no page after `seconds` (None: only `budget` bounds them). Without `wait`, a tick while
    another replica holds the engine lock is skipped: that replica is ticking or processing
    events, and ticks again itself."""
    # One replica ticks at a time: sweep cursors are read and written whole.
    if wait:
        tx.lock_engine()
    elif not tx.try_lock_engine():
        return TickResult(False, 0, False, skipped=True)
    changed = advance_lifecycle(tx, catalog, now)
    if changed:  # later steps ask "was it running then?": use the moments just recorded
        catalog = Catalog.build(tx.automations(), tx.status_changes())
    deadline = None if seconds is None else time.monotonic() + seconds
    left = Budget(budget, deadline)
    for ident in sorted(catalog.by_id):
        live = catalog.by_id[ident]
        if live.row.status == DELETED or live.row.started_at is None or live.status == _STOPPED:
            continue
        trigger = live.model.trigger
        if isinstance(trigger, DateTrigger):
            date_sweep(tx, ctx, live, trigger, now, left)
        elif isinstance(trigger, ScheduleTrigger):
            schedule_sweep(tx, ctx, live, trigger, now, left)
        elif isinstance(trigger, EmailTrigger) and trigger.action in _NEGATIVE:
            _negative_checks(tx, ctx, live, trigger, now)
    return TickResult(changed, budget - left.left, left.more)


# --- not_opened / not_clicked -----------------------------------------------------------


def _negative_checks(
    tx: WriteTx, ctx: EngineContext, live: Live, trigger: EmailTrigger, now: datetime
) -> None:
    assert trigger.within is not None
    within = timedelta(seconds=trigger.within)
    key = f"scheduler:neg:{live.id}"
    cursor = load_cursor(tx, key, live)
    if now <= cursor.checked:
        return
    if ran_during(live, cursor.checked, now):
        sent = tx.messages_sent_between(trigger.automation, cursor.checked - within, now - within)
        for message in sent:
            _check_message(tx, ctx, live, trigger, message, within, now)
    cursor.checked = now
    save_cursor(tx, key, cursor)


def _check_message(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    trigger: EmailTrigger,
    message: Message,
    within: timedelta,
    now: datetime,
) -> None:
    deadline = message.sent_at + within
    if live.id not in message.listeners or message.status in ("failed", "bounced"):
        return
    if not live.running_at(deadline) or _answered(tx, trigger, message.id, deadline):
        return
    if not tx.claim_once(f"neg:{live.id}:{message.id}", now):
        return
    subscriber = tx.subscriber_by_id(message.subscriber_id)
    if subscriber is None or subscriber.deleted_at is not None:
        return
    data: dict[str, Any] = {
        "automation": trigger.automation,
        "message_id": message.id,
        "sent_at": message.sent_at.isoformat(),
    }
    if trigger.action is EmailAction.NOT_CLICKED:
        data["link"] = trigger.link or trigger.link_contains or ""
    event_var = {"name": f"email.{trigger.action.value}", "data": data}
    enter(tx, ctx, live, subscriber, deadline, event_var)


def _answered(tx: ReadTx, trigger: EmailTrigger, message_id: str, deadline: datetime) -> bool:
    """Whether the message was opened / clicked (or bounced) by `deadline`."""
    for event in tx.message_events(message_id):
        if min(event.occurred_at, event.received_at) > deadline:
            continue
        if event.type == "bounced":
            return True
        if trigger.action is EmailAction.NOT_OPENED and event.type in ("opened", "clicked"):
            return True
        if event.type == "clicked" and trigger.matches_link(event.url):
            return True
    return False
