"""Send-window timing (runner/core/timing.py) against a brute-force reference that walks the clock
minute by minute, across DST changes.

The reference knows only the documented rules (docs/file-format.md, `send_window`, and
docs/decisions.md, "DST and send windows"): a window opens on each of `days` at `start`
local time and closes at `end`, on the next day when it wraps past midnight. It never
converts a wall time to an instant: it lists every UTC minute with the wall clock it shows,
and a window opens at the first minute whose wall clock has reached `start` (so an opening
in a DST gap moves to the end of the gap, and an opening in a repeated hour takes the first
occurrence); it closes likewise at `end`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from runner.core import timing
from runner.core.model import DAY_ORDER, SendWindow
from tests.reliability.profiles import examples

pytestmark = pytest.mark.reliability

ZONES = ("America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Seoul")
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
BLOCK = timedelta(days=7)
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # blocks of the minute table start here
# Around every instant the reference looks this far back (a window opened up to a day
# earlier may still run) and ahead (restricted days: the next opening can be a week away,
# two when a DST gap swallows a short window).
BEHIND, AHEAD = 3 * DAY, 16 * DAY
# The instants drawn lie near these: the 2026 DST changes of the zones (New York and Berlin
# an hour, Lord Howe half an hour) and ordinary days.
NEAR = tuple(
    datetime.fromisoformat(text)
    for text in (
        "2026-03-08T07:00:00+00:00",  # New York springs forward at 02:00
        "2026-11-01T06:00:00+00:00",  # New York falls back at 02:00
        "2026-03-29T01:00:00+00:00",  # Berlin springs forward at 02:00
        "2026-10-25T01:00:00+00:00",  # Berlin falls back at 03:00
        "2026-04-04T15:00:00+00:00",  # Lord Howe falls back at 02:00 to 01:30
        "2026-10-03T15:30:00+00:00",  # Lord Howe springs forward at 02:00 to 02:30
        "2026-06-15T12:00:00+00:00",
        "2026-12-28T23:00:00+00:00",
    )
)


# --- the reference --------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _block(zone_name: str, index: int) -> tuple[tuple[datetime, datetime], ...]:
    """(UTC minute, the local wall clock then, naive) for every minute of one week."""
    zone = ZoneInfo(zone_name)
    first = EPOCH + index * BLOCK
    minutes = (first + n * MINUTE for n in range(int(BLOCK / MINUTE)))
    return tuple((m, m.astimezone(zone).replace(tzinfo=None)) for m in minutes)


@dataclass(frozen=True)
class Clock:
    """The minutes from `first` to `last` with their wall clocks, and the highest wall clock
    shown so far at each (it only dips back in a repeated hour)."""

    minutes: list[datetime]
    reached: list[datetime]

    @classmethod
    def around(cls, zone_name: str, instant: datetime) -> Clock:
        first, last = (instant - BEHIND - EPOCH) // BLOCK, (instant + AHEAD - EPOCH) // BLOCK
        rows = [row for index in range(first, last + 1) for row in _block(zone_name, index)]
        reached: list[datetime] = []
        for _, wall in rows:
            reached.append(max(wall, reached[-1]) if reached else wall)
        return cls([minute for minute, _ in rows], reached)

    def first_showing(self, wall: datetime) -> datetime | None:
        """The first minute whose wall clock shows `wall` or later."""
        index = bisect.bisect_left(self.reached, wall)
        return self.minutes[index] if index < len(self.minutes) else None

    def local_days(self) -> list[date]:
        first, last = self.reached[0].date(), self.reached[-1].date()
        return [first + n * DAY for n in range((last - first).days + 1)]


def reference_windows(window: SendWindow, clock: Clock) -> list[tuple[datetime, datetime]]:
    """[open, close) of every window opening on a day the clock shows, in order."""
    start, end = time.fromisoformat(window.start), time.fromisoformat(window.end)
    spans = []
    for day in clock.local_days():
        if DAY_ORDER[day.weekday()] not in window.days:
            continue
        closing_day = day + DAY if end <= start else day
        opening = clock.first_showing(datetime.combine(day, start))
        closing = clock.first_showing(datetime.combine(closing_day, end))
        if opening is not None and closing is not None and opening < closing:
            spans.append((opening, closing))
    return spans


def reference_next_opening(instant: datetime, window: SendWindow, zone_name: str) -> datetime:
    spans = reference_windows(window, Clock.around(zone_name, instant))
    for opening, closing in spans:
        if opening <= instant < closing:
            return instant
    return min(opening for opening, _ in spans if opening > instant)


# --- strategies ---------------------------------------------------------------------------

instants = st.builds(
    lambda base, seconds: base + timedelta(seconds=seconds),
    st.sampled_from(NEAR),
    st.integers(-3 * 86_400, 3 * 86_400),
)
# Hours where the changes happen (00:00-03:59) come up most, and every quarter hour.
clock_times = st.builds(
    "{:02d}:{:02d}".format,
    st.sampled_from([0, 1, 1, 2, 2, 2, 3, 3, 9, 17, 22, 23]),
    st.sampled_from([0, 15, 30, 45, 59]),
)


def _window(days: list[str], start: str, end: str) -> SendWindow:
    if end == start:  # start == end is an error: an hour later instead
        end = f"{(int(end[:2]) + 1) % 24:02d}{end[2:]}"
    return SendWindow.model_validate({"days": days, "start": start, "end": end})


windows = st.builds(
    _window,
    st.one_of(
        st.just([day.value for day in DAY_ORDER]),
        st.lists(st.sampled_from([day.value for day in DAY_ORDER]), min_size=1, unique=True),
    ),
    clock_times,
    clock_times,
)


def describe(window: SendWindow) -> str:
    wraps = "wrapped " if window.end <= window.start else ""
    return f"{wraps}{window.start}-{window.end} on {len(window.days)} days"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


EVERY_DAY = [day.value for day in DAY_ORDER]


@examples(quick=120, long=3000)
@given(instants, windows, st.sampled_from(ZONES))
# Windows a DST gap swallows whole, openings in a gap and in a repeated hour.
@example(_at("2026-03-08T06:00:00+00:00"), _window(EVERY_DAY, "02:15", "02:45"), ZONES[0])
@example(_at("2026-10-03T15:00:00+00:00"), _window(EVERY_DAY, "02:00", "02:15"), ZONES[2])
@example(_at("2026-03-29T00:30:00+00:00"), _window(["sun"], "02:30", "02:45"), ZONES[1])
@example(_at("2026-03-28T12:00:00+00:00"), _window(["sun"], "02:30", "09:00"), ZONES[1])
@example(_at("2026-11-01T04:00:00+00:00"), _window(EVERY_DAY, "01:30", "01:45"), ZONES[0])
@example(_at("2026-10-25T00:10:00+00:00"), _window(["sat"], "22:00", "02:30"), ZONES[1])
@example(_at("2026-04-04T14:50:00+00:00"), _window(EVERY_DAY, "01:45", "03:00"), ZONES[2])
def test_windows_agree_with_the_minute_by_minute_reference(
    instant: datetime, window: SendWindow, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    clock = Clock.around(zone_name, instant)
    spans = reference_windows(window, clock)
    inside = any(opening <= instant < closing for opening, closing in spans)
    event("inside" if inside else "outside")
    assert timing.in_window(instant, window, zone) is inside
    expected = instant if inside else min(o for o, _ in spans if o > instant)
    assert timing.next_opening(instant, window, zone) == expected, describe(window)
    # Every opening and closing near the instant: the first minute the window is open, and
    # the minute before it, agree with the reference.
    for opening, closing in spans:
        if instant - DAY <= opening <= instant + 2 * DAY:
            assert timing.in_window(opening, window, zone), (opening, describe(window))
            assert not timing.in_window(closing, window, zone) or any(
                o <= closing < c for o, c in spans
            ), (closing, describe(window))
            before = opening - MINUTE
            assert timing.in_window(before, window, zone) is any(
                o <= before < c for o, c in spans
            ), (before, describe(window))


@examples(quick=60, long=1500)
@given(
    instants,
    st.sampled_from([0, 1, 59, 3_600, 5_400, 86_400, 86_400 + 1_800]),
    st.sampled_from([3_600, 86_400, 7 * 86_400]),
    st.integers(0, 3),
    windows,
    st.sampled_from(ZONES),
)
def test_due_and_repeat_times_agree_with_the_reference(
    anchor: datetime, wait: int, every: int, k: int, window: SendWindow, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    exact = anchor + timedelta(seconds=wait + k * every)  # elapsed time, never wall time
    expected = reference_next_opening(exact, window, zone_name)
    assert timing.repeat_due(anchor, wait, every, k, window, zone) == expected
    if k == 0:
        assert timing.due_at(anchor, wait, window, zone) == expected
    assert timing.due_at(anchor, wait + k * every, None, zone) == exact
