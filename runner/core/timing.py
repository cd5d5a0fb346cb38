"""When sends are due: wait, send windows, repeats, date and cron firings (docs/file-format.md);
pure.

Every function takes the time it reasons about as an argument; instants are timezone-aware,
returned in UTC. Local wall times are turned into instants by `resolve_local`: a wall time in a
DST gap moves to the first instant after the gap, an ambiguous one uses its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from runner.core import durations
from runner.core.model import DAY_ORDER, SendWindow

DAY = timedelta(days=1)
_MONTH_DAY = re.compile(r"^(?:(\d{4})-)?(\d{2})-(\d{2})$")
# Days of openings looked at around an instant: a window runs at most ~24h past its opening day,
# and a whole week of openings can be empty only when a DST gap swallows a short window.
_LOOK_BACK_DAYS = 2
_LOOK_AHEAD_DAYS = 15
# Ticks skipped walking back from a wall time that lies ahead of the bound (at most one
# repeated hour of minute ticks).
_MAX_STEPS_BACK = 200


def zone_for(name: str | None, subscriber_fields: Mapping[str, Any], default: str) -> ZoneInfo:
    """The zone named by a window or trigger: None -> `default`; "subscriber" -> the
    subscriber's `timezone` field when it is a valid IANA name, else `default`."""
    if name is None:
        return ZoneInfo(default)
    if name == "subscriber":
        field = subscriber_fields.get("timezone")
        if isinstance(field, str) and durations.is_timezone(field):
            return ZoneInfo(field)
        return ZoneInfo(default)
    return ZoneInfo(name)


def to_utc(instant: datetime) -> datetime:
    """`instant` in UTC; naive datetimes are refused rather than guessed."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"naive datetime {instant.isoformat()}: instants must be timezone-aware")
    return instant.astimezone(UTC)


def resolve_local(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of the local wall time `wall` in `zone` (see module docstring)."""
    wall = wall.replace(tzinfo=None)  # a wall time is read as written, whatever zone it carries
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 applies the offset from before the transition, which lands after it and
    # fold=1 lands before it: the transition is the first instant with fold=0's final offset.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp())
    target = first.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _window_on(day: date, window: SendWindow, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The [open, close) instants of the window opening on local `day`, or None."""
    if DAY_ORDER[day.weekday()] not in window.days:
        return None
    start, end = _clock(window.start), _clock(window.end)
    close_day = day + DAY if end <= start else day
    opening = resolve_local(datetime.combine(day, start), zone)
    closing = resolve_local(datetime.combine(close_day, end), zone)
    return (opening, closing) if opening < closing else None  # a DST gap can swallow a window


def _windows_from(
    day: date, days: int, window: SendWindow, zone: ZoneInfo
) -> Iterator[tuple[datetime, datetime]]:
    for index in range(days):
        span = _window_on(day + index * DAY, window, zone)
        if span is not None:
            yield span


def in_window(instant: datetime, window: SendWindow, zone: ZoneInfo) -> bool:
    """Whether `instant` lies inside a window, including one that opened the day before."""
    instant = to_utc(instant)
    first_day = instant.astimezone(zone).date() - _LOOK_BACK_DAYS * DAY
    spans = _windows_from(first_day, _LOOK_BACK_DAYS + 1, window, zone)
    return any(opening <= instant < closing for opening, closing in spans)


def next_opening(instant: datetime, window: SendWindow, zone: ZoneInfo) -> datetime:
    """`instant` itself when it is inside a window, else the next instant a window opens."""
    instant = to_utc(instant)
    if in_window(instant, window, zone):
        return instant
    first_day = instant.astimezone(zone).date()
    for opening, _ in _windows_from(first_day, _LOOK_AHEAD_DAYS, window, zone):
        if opening >= instant:
            return opening
    raise ValueError(f"no opening of {window!r} within {_LOOK_AHEAD_DAYS} days")


def due_at(
    trigger_time: datetime, wait_seconds: int, window: SendWindow | None, zone: ZoneInfo
) -> datetime:
    """Trigger time + wait (exact elapsed time), moved forward into the window."""
    due = to_utc(trigger_time) + timedelta(seconds=wait_seconds)
    return due if window is None else next_opening(due, window, zone)


def repeat_due(
    anchor: datetime,
    wait_seconds: int,
    every_seconds: int,
    k: int,
    window: SendWindow | None,
    zone: ZoneInfo,
) -> datetime:
    """Repeat `k` due at anchor + wait + k * every, moved into the window (k = 0: first email)."""
    if k < 0:
        raise ValueError(f"repeat number {k} is negative")
    return due_at(anchor, wait_seconds + k * every_seconds, window, zone)


def parse_month_day(value: object) -> tuple[int, int] | None:
    """(month, day) of a `YYYY-MM-DD`, `MM-DD` or ISO date-time value, or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > 10 and text[10] in "T ":
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return None
        text = text[:10]
    match = _MONTH_DAY.match(text)
    if match is None:
        return None
    year_text, month, day = match.groups()
    try:  # a leap year checks Feb 29 of MM-DD values; a written year must hold the date itself
        date(int(year_text) if year_text else 2000, int(month), int(day))
    except ValueError:
        return None
    return int(month), int(day)


def _anniversary(month: int, day: int, year: int) -> date:
    if (month, day) == (2, 29) and not _is_leap(year):
        return date(year, 2, 28)
    return date(year, month, day)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def date_firing(
    value: object, year: int, offset_seconds: int, at: str, zone: ZoneInfo
) -> datetime | None:
    """The firing for the anniversary in `year` of the date in `value`, shifted by the whole-day
    offset, at local time `at`; None when the value does not parse."""
    month_day = parse_month_day(value)
    if month_day is None:
        return None
    day = _anniversary(*month_day, year) + timedelta(days=offset_seconds // 86_400)
    return resolve_local(datetime.combine(day, _clock(at)), zone)


def date_firings_between(
    value: object,
    offset_seconds: int,
    at: str,
    zone: ZoneInfo,
    after: datetime,
    until: datetime,
) -> list[datetime]:
    """Firings in (after, until], one per anniversary year, oldest first."""
    after, until = to_utc(after), to_utc(until)
    if parse_month_day(value) is None or until <= after:
        return []
    # Widen the years by the offset and a margin for the zone and Feb 28/29.
    spread = abs(offset_seconds) // (365 * 86_400) + 2
    first, last = max(after.year - spread, 2), min(until.year + spread, 9_998)
    firings = (
        date_firing(value, year, offset_seconds, at, zone) for year in range(first, last + 1)
    )
    return [firing for firing in firings if firing is not None and after < firing <= until]


def _cron(cron: str, start: datetime) -> Any:
    from croniter import croniter  # imported late, as in durations: only schedule triggers need it

    return croniter(cron, start)


def cron_ticks(
    cron: str, zone: ZoneInfo, after: datetime, until: datetime, limit: int = 1000
) -> list[datetime]:
    """Ticks of `cron` in (after, until], read as local wall times of `zone`, as UTC instants.

    croniter walks naive wall times (no DST there), each resolved by `resolve_local`: a tick in a
    DST gap fires at the end of the gap (merged with any other tick landing there), and a wall
    time repeated at fall-back fires once, at its first occurrence.
    """
    after, until = to_utc(after), to_utc(until)
    ticks: list[datetime] = []
    walker = _cron(cron, after.astimezone(zone).replace(tzinfo=None))
    while len(ticks) < limit:
        try:
            wall = walker.get_next(datetime)
        except ValueError:  # CroniterBadDateError: a date that never comes (Feb 30)
            break
        tick = resolve_local(wall, zone)
        if tick > until:
            break
        if tick > after and (not ticks or tick > ticks[-1]):
            ticks.append(tick)
    return ticks


def last_cron_tick(cron: str, zone: ZoneInfo, at_or_before: datetime) -> datetime | None:
    """The latest tick of `cron` at or before `at_or_before` (see cron_ticks), or None."""
    at_or_before = to_utc(at_or_before)
    local = at_or_before.astimezone(zone)
    # In the repeated hour after a fall-back, every first occurrence of that hour's wall times
    # is already past: start from the wall time read with the earlier offset.
    shift = _offset(local.replace(fold=0)) - _offset(local)
    wall = (local.replace(tzinfo=None) + shift).replace(second=0, microsecond=0)
    walker = _cron(cron, wall + timedelta(minutes=1))  # get_prev excludes its start
    for _ in range(_MAX_STEPS_BACK):
        try:
            tick = resolve_local(walker.get_prev(datetime), zone)
        except ValueError:  # CroniterBadDateError: no such date in the past either
            return None
        if tick <= at_or_before:
            return tick
    return None


def _offset(local: datetime) -> timedelta:
    return local.utcoffset() or timedelta(0)
