"""When an automation sends, in words, with the next firings of a schedule or date (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runner.core.durations import format_duration
from runner.core.model import (
    ApiTrigger,
    Automation,
    DateTrigger,
    EmailTrigger,
    EventTrigger,
    ScheduleTrigger,
    SendWindow,
)
from runner.core.timing import cron_ticks, date_firings_between, zone_for

FIRINGS = 5
_DAY_NAMES = {
    "mon": "Mon",
    "tue": "Tue",
    "wed": "Wed",
    "thu": "Thu",
    "fri": "Fri",
    "sat": "Sat",
    "sun": "Sun",
}


def trigger_words(model: Automation) -> str:
    """What starts the automation, e.g. "when a `purchase` event arrives"."""
    trigger = model.trigger
    if isinstance(trigger, EventTrigger):
        group = f" for group `{trigger.group}`" if trigger.group else ""
        where = " (with a `where` condition)" if trigger.where is not None else ""
        return f"when a `{trigger.event}` event arrives{group}{where}"
    if isinstance(trigger, ApiTrigger):
        return f"on `POST /v1/automations/{model.id}/trigger`"
    if isinstance(trigger, EmailTrigger):
        action = trigger.action.value.replace("_", " ")
        within = f" within {format_duration(trigger.within)}" if trigger.within else ""
        return f"when an email of `{trigger.automation}` is {action}{within}"
    if isinstance(trigger, DateTrigger):
        side = "before" if trigger.offset < 0 else "after"
        offset = f", {format_duration(abs(trigger.offset))} {side}" if trigger.offset else ""
        zone = _zone_words(trigger.timezone)
        return f"every year on `{trigger.field}`{offset}, at {trigger.at}{zone}"
    assert isinstance(trigger, ScheduleTrigger)
    return f"on the schedule `{trigger.cron}`{_zone_words(trigger.timezone)}"


def timing_words(model: Automation) -> list[str]:
    """The wait, the window and the repeats in words, one line each."""
    lines = [f"Trigger: {trigger_words(model)}"]
    wait = model.wait
    lines.append(f"Wait: {format_duration(wait)} after the trigger" if wait else "Wait: none")
    lines.append(f"Window: {window_words(model.send_window)}")
    if model.repeat is not None:
        every = format_duration(model.repeat.every)
        lines.append(f"Repeat: {model.repeat.times} more, every {every}")
    if model.stop_at is not None:
        lines.append(f"Stops by itself at {model.stop_at.isoformat()}")
    return lines


def window_words(window: SendWindow | None) -> str:
    """`any time`, or the days, hours and zone of the send window."""
    if window is None:
        return "any time"
    days = [d.value for d in window.days]
    named = "every day" if len(days) == 7 else ", ".join(_DAY_NAMES[d] for d in days)
    wraps = " (to the next day)" if window.end <= window.start else ""
    return f"{named}, {window.start} to {window.end}{wraps}{_zone_words(window.timezone)}"


def next_firings(
    model: Automation, now: datetime, default_zone: str, fields: dict[str, Any]
) -> list[datetime]:
    """The next five schedule ticks, or date firings for a subscriber with `fields`."""
    trigger = model.trigger
    if isinstance(trigger, ScheduleTrigger):
        zone = ZoneInfo(trigger.timezone or default_zone)
        return cron_ticks(trigger.cron, zone, now, now + timedelta(days=5 * 366), FIRINGS)
    if isinstance(trigger, DateTrigger):
        zone = zone_for(trigger.timezone, fields, default_zone)
        value = fields.get(trigger.field.removeprefix("subscriber.fields."))
        until = now + timedelta(days=366 * (FIRINGS + 1))
        return date_firings_between(value, trigger.offset, trigger.at, zone, now, until)[:FIRINGS]
    return []


def _zone_words(zone: str | None) -> str:
    if zone is None:
        return " (the runner's time zone)"
    if zone == "subscriber":
        return " (the subscriber's time zone)"
    return f" ({zone})"
