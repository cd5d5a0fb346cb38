"""The engine's time-driven work: scheduled starts and `stop_at` stops,
date and schedule firings, and `not_opened` / `not_clicked` checks at sent time + `within`.

`tick` runs inside one write transaction and is called often, so every step is bounded and
idempotent: progress is kept in meta (per automation) and each firing is claimed once.
"""

from __future__ import annotations

import calendar
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runner.core import timing
from runner.core.conditions import evaluate
from runner.core.model import DateTrigger, EmailAction, EmailTrigger, ScheduleTrigger, Status
from runner.core.records import Message, Subscriber
from runner.engine.catalog import DELETED, Catalog, Live
from runner.engine.context import EngineContext
from runner.engine.entering import enter
from runner.engine.status_changes import advance_lifecycle
from runner.store.base import ReadTx, WriteTx

SUBSCRIBER_BUDGET = 1000  # subscribers looked at per tick, over every date/schedule automation
_NEGATIVE = (EmailAction.NOT_OPENED, EmailAction.NOT_CLICKED)
_RUNNING, _STOPPED = Status.RUNNING.value, Status.STOPPED.value
_TICK = timedelta(microseconds=1)


def tick(
    tx: WriteTx,
    catalog: Catalog,
    ctx: EngineContext,
    now: datetime,
    *,
    budget: int = SUBSCRIBER_BUDGET,
) -> bool:
    """One round of time-driven work at `now`; True when status history changed."""
    tx.lock_engine()  # one replica ticks at a time: sweep cursors are read and written whole
    changed = advance_lifecycle(tx, catalog, now)
    if changed:  # later steps ask "was it running then?": use the moments just recorded
        catalog = Catalog.build(tx.automations(), tx.status_changes())
    left = [budget]
    for ident in sorted(catalog.by_id):
        live = catalog.by_id[ident]
        if live.row.status == DELETED or live.row.started_at is None or live.status == _STOPPED:
            continue
        trigger = live.model.trigger
        if isinstance(trigger, DateTrigger):
            _date_sweep(tx, ctx, live, trigger, now, left)
        elif isinstance(trigger, ScheduleTrigger):
            _schedule_sweep(tx, ctx, live, trigger, now, left)
        elif isinstance(trigger, EmailTrigger) and trigger.action in _NEGATIVE:
            _negative_checks(tx, ctx, live, trigger, now)
    return changed


# --- running intervals ------------------------------------------------------------------


def running_intervals(
    live: Live, after: datetime, until: datetime
) -> Iterator[tuple[datetime, datetime | None]]:
    """[start, end) spans in which the automation was running that meet (after, until]."""
    moments = live.moments
    for index, status in enumerate(live.statuses):
        if status != _RUNNING:
            continue
        start = moments[index]
        end = moments[index + 1] if index + 1 < len(moments) else None
        if start <= until and (end is None or end > after + _TICK):
            yield start, end


def ran_during(live: Live, after: datetime, until: datetime) -> bool:
    """Whether the automation was running at some instant of (after, until]."""
    return next(running_intervals(live, after, until), None) is not None


# --- cursors kept in meta ---------------------------------------------------------------


@dataclass
class _Cursor:
    checked: datetime  # every instant up to here has been looked at
    target: datetime | None = None  # the instant a sweep in progress is for
    after_id: int = 0  # the last subscriber that sweep handled


def _load(tx: ReadTx, key: str, live: Live) -> _Cursor:
    text = tx.meta(key)
    if text is None:  # from just before the start: an instant at the start moment counts
        assert live.row.started_at is not None
        return _Cursor(live.row.started_at - _TICK)
    data: dict[str, Any] = json.loads(text)
    target = data.get("target")
    return _Cursor(
        datetime.fromisoformat(data["checked"]),
        datetime.fromisoformat(target) if target else None,
        int(data.get("after_id", 0)),
    )


def _save(tx: WriteTx, key: str, cursor: _Cursor) -> None:
    data = {
        "checked": cursor.checked.isoformat(),
        "target": cursor.target.isoformat() if cursor.target else None,
        "after_id": cursor.after_id,
    }
    tx.set_meta(key, json.dumps(data))


def _page(tx: WriteTx, cursor: _Cursor, left: list[int]) -> list[Subscriber]:
    """The next page of the sweep, charged to the tick's budget."""
    if left[0] <= 0:
        return []
    wanted = left[0]
    page = tx.subscribers(cursor.after_id, wanted)
    left[0] -= len(page)
    if page:
        assert page[-1].id is not None
        cursor.after_id = page[-1].id
    if len(page) < wanted:  # a short page: every subscriber has been looked at
        cursor.target = None
    return page


def subscriber_context(subscriber: Subscriber, event: dict[str, Any]) -> dict[str, Any]:
    """The condition context of a subscriber and an event variable."""
    return {
        "subscriber": {
            "email": subscriber.email,
            "fields": subscriber.fields,
            "groups": sorted(subscriber.groups),
        },
        "event": event,
    }


def _in_audience(live: Live, context: dict[str, Any]) -> bool:
    audience = live.model.audience
    return audience is None or evaluate(audience, context)


# --- date triggers ----------------------------------------------------------------------


def _date_sweep(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    trigger: DateTrigger,
    now: datetime,
    left: list[int],
) -> None:
    key = f"scheduler:date:{live.id}"
    cursor = _load(tx, key, live)
    if cursor.target is None:
        if now <= cursor.checked or not _may_fire(cursor.checked, now, trigger.at):
            return
        if not ran_during(live, cursor.checked, now):
            cursor.checked = now
            _save(tx, key, cursor)
            return
        cursor.target, cursor.after_id = now, 0
    after, until = cursor.checked, cursor.target
    assert until is not None
    if left[0] <= 0:
        _save(tx, key, cursor)
        return
    for subscriber in _page(tx, cursor, left):
        _fire_date(tx, ctx, live, trigger, subscriber, after, until, now)
    if cursor.target is None:
        cursor.checked, cursor.after_id = until, 0
    _save(tx, key, cursor)


def _may_fire(after: datetime, until: datetime, at: str) -> bool:
    """Whether a date firing at local `at` can fall in (after, until] in any zone.

    Zone offsets are whole quarter-hours, and a wall time in a DST gap moves to the end of the
    gap (a whole hour), so firings land on whole minutes congruent to `at` or 0 modulo 15.
    """
    if until - after >= timedelta(minutes=15):
        return True
    minutes = {int(at[-2:]) % 15, 0}
    instant = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while instant <= until:
        if instant.minute % 15 in minutes:
            return True
        instant += timedelta(minutes=1)
    return False


def _fire_date(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    trigger: DateTrigger,
    subscriber: Subscriber,
    after: datetime,
    until: datetime,
    now: datetime,
) -> None:
    if subscriber.suppressed is not None or subscriber.deleted_at is not None:
        return
    value = subscriber.fields.get(trigger.field.removeprefix("subscriber.fields."))
    zone = timing.zone_for(trigger.timezone, subscriber.fields, ctx.default_timezone)
    found = last_date_firing(live, trigger, value, zone, after, until)
    if found is None:
        return
    anniversary, instant = found
    event = {
        "name": "date",
        "data": {"field": trigger.field, "date": anniversary.isoformat()},
        "occurred_at": instant.isoformat(),
    }
    context = subscriber_context(subscriber, event)
    if not _in_audience(live, context):
        return
    assert subscriber.id is not None
    if not tx.claim_once(f"date:{live.id}:{subscriber.id}:{anniversary.year}", now):
        return
    event_var = {"name": "date", "data": event["data"]}
    enter(tx, ctx, live, subscriber, instant, event_var, audience_context=context)


def last_date_firing(
    live: Live,
    trigger: DateTrigger,
    value: object,
    zone: ZoneInfo,
    after: datetime,
    until: datetime,
) -> tuple[date, datetime] | None:
    """The latest firing in (after, until] at which the automation was running, with the
    anniversary it celebrates; missed earlier firings are not caught up."""
    month_day = timing.parse_month_day(value)
    if month_day is None:
        return None
    spread = abs(trigger.offset) // (365 * 86_400) + 1
    best: tuple[date, datetime] | None = None
    for year in range(max(after.year - spread, 2), min(until.year + spread, 9_998) + 1):
        instant = timing.date_firing(value, year, trigger.offset, trigger.at, zone)
        if instant is None or not after < instant <= until or not live.running_at(instant):
            continue
        if best is None or instant > best[1]:
            best = (_anniversary(month_day, year), instant)
    return best


def _anniversary(month_day: tuple[int, int], year: int) -> date:
    month, day = month_day
    if (month, day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


# --- schedule triggers ------------------------------------------------------------------


def _schedule_sweep(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    trigger: ScheduleTrigger,
    now: datetime,
    left: list[int],
) -> None:
    key = f"scheduler:cron:{live.id}"
    cursor = _load(tx, key, live)
    if cursor.target is None:
        zone = ZoneInfo(trigger.timezone or ctx.default_timezone)
        found = last_running_tick(live, trigger.cron, zone, cursor.checked, now)
        if found is None:
            return  # nothing to do: the cursor may stay behind, the next look is as cheap
        cursor.checked = now
        if tx.claim_once(f"cron:{live.id}:{found.isoformat()}", now):
            cursor.target, cursor.after_id = found, 0
        _save(tx, key, cursor)
    tick_at = cursor.target
    if tick_at is None or left[0] <= 0:
        return
    event_var = {"name": "schedule", "data": {"tick": tick_at.isoformat()}}
    event = {**event_var, "occurred_at": tick_at.isoformat()}
    for subscriber in _page(tx, cursor, left):
        if subscriber.suppressed is not None or subscriber.deleted_at is not None:
            continue
        context = subscriber_context(subscriber, event)
        if _in_audience(live, context):
            enter(tx, ctx, live, subscriber, tick_at, event_var, audience_context=context)
    _save(tx, key, cursor)


def last_running_tick(
    live: Live, cron: str, zone: ZoneInfo, after: datetime, until: datetime
) -> datetime | None:
    """The latest cron tick in (after, until] at which the automation was running."""
    for start, end in reversed(list(running_intervals(live, after, until))):
        high = until if end is None else min(end - _TICK, until)
        found = timing.last_cron_tick(cron, zone, high)
        if found is not None and found > after and found >= start:
            return found
    return None


# --- not_opened / not_clicked -----------------------------------------------------------


def _negative_checks(
    tx: WriteTx, ctx: EngineContext, live: Live, trigger: EmailTrigger, now: datetime
) -> None:
    assert trigger.within is not None
    within = timedelta(seconds=trigger.within)
    key = f"scheduler:neg:{live.id}"
    cursor = _load(tx, key, live)
    if now <= cursor.checked:
        return
    if ran_during(live, cursor.checked, now):
        sent = tx.messages_sent_between(trigger.automation, cursor.checked - within, now - within)
        for message in sent:
            _check_message(tx, ctx, live, trigger, message, within, now)
    cursor.checked = now
    _save(tx, key, cursor)


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
