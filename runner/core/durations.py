"""Parsing of the small value languages used in automation files (pure).

Durations (`30s`, `7d`, `1d12h`), day offsets (`-3d`, `2w`), times of day
(`09:00`), IANA time zones and 5-field cron expressions.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
DURATION_PATTERN = r"^(?=\d)(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"
DAY_OFFSET_PATTERN = r"^[+-]?(?=\d)(\d+w)?(\d+d)?$"
TIME_PATTERN = r"^([01]?\d|2[0-3]):[0-5]\d$"

_DURATION = re.compile(DURATION_PATTERN)
_DAY_OFFSET = re.compile(DAY_OFFSET_PATTERN)
_TIME = re.compile(TIME_PATTERN)


def parse_duration(text: str) -> int | None:
    """Seconds in `text` (units w d h m s, largest first), or None when malformed."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return _sum_units(match.groups())


def parse_day_offset(text: str) -> int | None:
    """Signed seconds in a whole-day offset such as `-3d` or `1w`, or None."""
    match = _DAY_OFFSET.match(text)
    if match is None:
        return None
    seconds = _sum_units(match.groups())
    return -seconds if text.startswith("-") else seconds


def _sum_units(groups: tuple[str | None, ...]) -> int:
    total = 0
    for group in groups:
        if group:
            total += int(group[:-1]) * UNIT_SECONDS[group[-1]]
    return total


def format_duration(seconds: int) -> str:
    """The shortest duration text for `seconds` (inverse of parse_duration)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    rest = abs(seconds)
    parts = []
    for unit, size in UNIT_SECONDS.items():
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def normalise_time(text: str) -> str | None:
    """`H:MM` or `HH:MM` as `HH:MM`, or None when it is not a time of day."""
    if _TIME.match(text) is None:
        return None
    hours, minutes = text.split(":")
    return f"{int(hours):02d}:{minutes}"


@lru_cache(maxsize=1024)
def is_timezone(name: str) -> bool:
    """Whether `name` is an IANA time zone known to zoneinfo."""
    if not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=1024)
def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a valid 5-field cron, or None when it is."""
    fields = expression.split()
    if len(fields) != 5:
        return f"a cron expression has 5 fields, this one has {len(fields)}"
    from croniter import croniter  # imported late: only files with a schedule trigger need it

    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None
