"""Date and schedule triggers: each firing sweeps the subscribers, a bounded page per tick,
resumable from a cursor; each firing enters a subscriber at most once (claimed in the store).
Missed earlier firings are not caught up: only the latest one while running counts."""

from __future__ import annotations

import calendar
import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runner.core import timing
from runner.core.conditions import evaluate
from runner.core.model import DateTrigger, ScheduleTrigger
from runner.core.prefilter import decided, prefilters
from runner.core.records import Subscriber
from runner.engine.catalog import TICK, Live, ran_during, running_intervals
from runner.engine.context import EngineContext
from runner.engine.cursors import (
    Budget,
    fan_out_window,
    load_cursor,
    next_page,
    next_rows,
    next_window,
    save_cursor,
)
from runner.engine.entering import (
    enter,
    enter_firing,
    enter_firing_rows,
    firing_template,
    needs_fields,
)
from runner.store.base import WriteTx
from runner.store.fanout import SweepRow


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


def date_sweep(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    trigger: DateTrigger,
    now: datetime,
    budget: Budget,
) -> None:
    key = f"scheduler:date:{live.id}"
    cursor = load_cursor(tx, key, live)
    if cursor.target is None:
        if now <= cursor.checked or not _may_fire(cursor.checked, now, trigger.at):
            return
        if not ran_during(live, cursor.checked, now):
            cursor.checked = now
            save_cursor(tx, key, cursor)
            return
        cursor.target, cursor.after_id = now, 0
    after, until = cursor.checked, cursor.target
    assert until is not None
    while cursor.target is not None and not budget.spent():
        for subscriber in next_page(tx, cursor, budget):
            _fire_date(tx, ctx, live, trigger, subscriber, after, until, now)
    if cursor.target is None:
        cursor.checked, cursor.after_id = until, 0
    save_cursor(tx, key, cursor)
    budget.note(cursor)


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


def schedule_sweep(
    tx: WriteTx,
    ctx: EngineContext,
    live: Live,
    trigger: ScheduleTrigger,
    now: datetime,
    budget: Budget,
) -> None:
    """Pages of the sweep of the latest tick while the tick's budget lasts: the audience's
    plain comparisons are tested in SQL, the whole audience in Python on what they let
    through, then every subscriber in it enters with one statement for the entries and one
    for the pending sends of the page. When the SQL tests decide the audience, rows are not
    decoded; and when every send is also due at the same time, the store chooses and enters
    the page itself, without the rows coming to Python."""
    key = f"scheduler:cron:{live.id}"
    cursor = load_cursor(tx, key, live)
    if cursor.target is None:
        zone = ZoneInfo(trigger.timezone or ctx.default_timezone)
        found = last_running_tick(live, trigger.cron, zone, cursor.checked, now)
        if found is None:
            return  # nothing to do: the cursor may stay behind, the next look is as cheap
        cursor.checked = now
        if tx.claim_once(f"cron:{live.id}:{found.isoformat()}", now):
            cursor.target, cursor.after_id = found, 0
        save_cursor(tx, key, cursor)
    tick_at = cursor.target
    if tick_at is None:
        return
    if budget.spent():
        budget.note(cursor)
        return
    event_var = {"name": "schedule", "data": {"tick": tick_at.isoformat()}}
    event = {**event_var, "occurred_at": tick_at.isoformat()}
    tests = prefilters(live.model.audience)
    exact = decided(live.model.audience, tx.exact_field_tests())
    # Decided in SQL and one due time for all: the store enters the page by itself.
    template = (
        firing_template(ctx, live, tick_at, event_var) if exact and not needs_fields(live) else None
    )
    while cursor.target is not None and not budget.spent():
        if template is not None:
            held = fan_out_window(tx, cursor, budget, tests, template)
            enter_firing_rows(tx, ctx, live, _passing(live, held, event), tick_at, event_var)
            continue
        if exact:
            rows = next_rows(tx, cursor, budget, tests)
            chosen_rows = _passing(live, rows, event)
            enter_firing_rows(tx, ctx, live, chosen_rows, tick_at, event_var)
            continue
        page = next_window(tx, cursor, budget, tests)
        chosen = [s for s in page if _in_audience(live, subscriber_context(s, event))]
        enter_firing(tx, ctx, live, chosen, tick_at, event_var)
    save_cursor(tx, key, cursor)
    budget.note(cursor)


def _passing(
    live: Live, rows: list[SweepRow], event: dict[str, Any]
) -> list[tuple[int, str, dict[str, Any] | None]]:
    """(id, email, fields) of the rows in the audience when the SQL tests decided it: a row
    whose fields hold an escaped NUL, which SQLite's JSON reading cuts short, is checked in
    Python; fields are decoded only for those and when the send's due time needs them."""
    decode = needs_fields(live)
    chosen: list[tuple[int, str, dict[str, Any] | None]] = []
    for ident, email, fields_text, groups_text in rows:
        if "\\u0000" in fields_text:
            fields = json.loads(fields_text)
            person = Subscriber(ident, email, fields, set(json.loads(groups_text)))
            if not _in_audience(live, subscriber_context(person, event)):
                continue
            chosen.append((ident, email, fields))
            continue
        chosen.append((ident, email, json.loads(fields_text) if decode else None))
    return chosen


def last_running_tick(
    live: Live, cron: str, zone: ZoneInfo, after: datetime, until: datetime
) -> datetime | None:
    """The latest cron tick in (after, until] at which the automation was running."""
    for start, end in reversed(list(running_intervals(live, after, until))):
        high = until if end is None else min(end - TICK, until)
        found = timing.last_cron_tick(cron, zone, high)
        if found is not None and found > after and found >= start:
            return found
    return None
