"""Tests of runner/core/timing.py: send windows, wait, repeats, date and cron firings in zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core import timing
from runner.core.model import DAY_ORDER, SendWindow

SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
ZULU = ZoneInfo("UTC")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def window(start: str, end: str, days: list[str] | None = None) -> SendWindow:
    return SendWindow.model_validate({"days": days or list(DAY_ORDER), "start": start, "end": end})


def at(zone: ZoneInfo, text: str, fold: int = 0) -> datetime:
    """The UTC instant of local wall time `text` ("2026-11-30 10:00") in `zone`."""
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold).astimezone(UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- zones ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fields", "expected"),
    [
        (None, {"timezone": "Asia/Seoul"}, "Europe/London"),
        ("America/New_York", {"timezone": "Asia/Seoul"}, "America/New_York"),
        ("subscriber", {"timezone": "Asia/Seoul"}, "Asia/Seoul"),
        ("subscriber", {"timezone": "Mars/Olympus_Mons"}, "Europe/London"),
        ("subscriber", {"timezone": "../etc/passwd"}, "Europe/London"),
        ("subscriber", {"timezone": ""}, "Europe/London"),
        ("subscriber", {"timezone": 9}, "Europe/London"),
        ("subscriber", {}, "Europe/London"),
    ],
)
def test_zone_for(name: str | None, fields: dict[str, object], expected: str) -> None:
    assert timing.zone_for(name, fields, "Europe/London") == ZoneInfo(expected)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        timing.due_at(datetime(2026, 11, 30, 10), 0, None, SEOUL)


@pytest.mark.parametrize(
    ("zone", "wall", "expected"),
    [
        (SEOUL, "2026-11-30 10:00", "2026-11-30 01:00"),
        (NEW_YORK, "2026-03-08 02:30", "2026-03-08 07:00"),  # gap -> 03:00 EDT
        (NEW_YORK, "2026-03-08 02:00", "2026-03-08 07:00"),
        (NEW_YORK, "2026-03-08 03:00", "2026-03-08 07:00"),
        (NEW_YORK, "2026-11-01 01:30", "2026-11-01 05:30"),  # ambiguous -> first (EDT)
        (NEW_YORK, "2026-11-01 02:00", "2026-11-01 07:00"),
        (LONDON, "2026-03-29 01:30", "2026-03-29 01:00"),  # gap -> 02:00 BST
        (LONDON, "2026-10-25 01:30", "2026-10-25 00:30"),  # ambiguous -> first (BST)
        (ZoneInfo("Australia/Lord_Howe"), "2026-10-04 02:10", "2026-10-03 15:30"),  # 30 min gap
    ],
)
def test_resolve_local(zone: ZoneInfo, wall: str, expected: str) -> None:
    assert timing.resolve_local(datetime.fromisoformat(wall), zone) == utc(expected)


# --- send windows ---------------------------------------------------------------------

STIBEE_WEEKDAYS = window("10:00", "17:00", WEEKDAYS)
STIBEE_WRAPPED = window("15:00", "09:00")
STIBEE_MONDAY_WRAP = window("15:00", "09:00", ["mon"])


@pytest.mark.parametrize(
    ("send_window", "local", "expected"),
    [
        # Mon-Fri 10:00-17:00: Sunday 18:00 sends Monday 10:00 (2026-11-30 is a Monday).
        (STIBEE_WEEKDAYS, "2026-11-29 18:00", "2026-11-30 10:00"),
        (STIBEE_WEEKDAYS, "2026-11-30 09:59", "2026-11-30 10:00"),
        (STIBEE_WEEKDAYS, "2026-11-30 10:00", "2026-11-30 10:00"),
        (STIBEE_WEEKDAYS, "2026-11-30 16:59", "2026-11-30 16:59"),
        (STIBEE_WEEKDAYS, "2026-12-04 17:00", "2026-12-07 10:00"),  # Friday close -> Monday
        (STIBEE_WEEKDAYS, "2026-12-05 09:00", "2026-12-07 10:00"),
        # Daily 15:00 -> 09:00: 17:00 sends now, 10:00 waits until 15:00, 09:00 is outside.
        (STIBEE_WRAPPED, "2026-11-30 17:00", "2026-11-30 17:00"),
        (STIBEE_WRAPPED, "2026-11-30 10:00", "2026-11-30 15:00"),
        (STIBEE_WRAPPED, "2026-11-30 09:00", "2026-11-30 15:00"),
        (STIBEE_WRAPPED, "2026-11-30 08:59", "2026-11-30 08:59"),
        (STIBEE_WRAPPED, "2026-11-30 00:30", "2026-11-30 00:30"),
        (STIBEE_WRAPPED, "2026-11-30 15:00", "2026-11-30 15:00"),
        # Mon 15:00 -> Tue 09:00: Tuesday 10:00 waits for next Monday 15:00.
        (STIBEE_MONDAY_WRAP, "2026-12-01 10:00", "2026-12-07 15:00"),
        (STIBEE_MONDAY_WRAP, "2026-12-01 08:00", "2026-12-01 08:00"),
        (STIBEE_MONDAY_WRAP, "2026-12-01 09:00", "2026-12-07 15:00"),
        (STIBEE_MONDAY_WRAP, "2026-11-30 14:59", "2026-11-30 15:00"),
        (STIBEE_MONDAY_WRAP, "2026-11-29 23:00", "2026-11-30 15:00"),
    ],
)
def test_next_opening_stibee_examples(send_window: SendWindow, local: str, expected: str) -> None:
    assert timing.next_opening(at(SEOUL, local), send_window, SEOUL) == at(SEOUL, expected)


@pytest.mark.parametrize(
    ("send_window", "local", "inside"),
    [
        (STIBEE_WEEKDAYS, "2026-11-30 10:00", True),
        (STIBEE_WEEKDAYS, "2026-11-30 17:00", False),
        (STIBEE_WEEKDAYS, "2026-11-29 12:00", False),
        (STIBEE_WRAPPED, "2026-11-30 09:00", False),
        (STIBEE_WRAPPED, "2026-11-30 08:59", True),
        (STIBEE_WRAPPED, "2026-11-30 14:59", False),
        (STIBEE_MONDAY_WRAP, "2026-12-01 08:59", True),  # the window that opened Monday
        (STIBEE_MONDAY_WRAP, "2026-11-30 08:59", False),  # Sunday opens no window
        (STIBEE_MONDAY_WRAP, "2026-12-01 15:00", False),  # Tuesday opens no window
    ],
)
def test_in_window(send_window: SendWindow, local: str, inside: bool) -> None:
    assert timing.in_window(at(SEOUL, local), send_window, SEOUL) is inside


def test_the_zone_decides_the_window() -> None:
    office = window("09:00", "18:00", WEEKDAYS)
    monday_10_seoul = utc("2026-11-30 01:00")
    assert timing.in_window(monday_10_seoul, office, SEOUL)
    assert not timing.in_window(monday_10_seoul, office, ZULU)
    assert timing.next_opening(monday_10_seoul, office, ZULU) == utc("2026-11-30 09:00")
    sunday_utc = utc("2026-11-29 23:30")  # already Monday 08:30 in Seoul
    assert timing.next_opening(sunday_utc, office, SEOUL) == utc("2026-11-30 00:00")
    assert timing.next_opening(sunday_utc, office, ZULU) == utc("2026-11-30 09:00")


def test_new_york_spring_forward_opening_moves_past_the_gap() -> None:
    early = window("02:30", "04:00")
    before = at(NEW_YORK, "2026-03-08 01:00")
    opening = timing.next_opening(before, early, NEW_YORK)
    assert opening == at(NEW_YORK, "2026-03-08 03:00") == utc("2026-03-08 07:00")
    assert timing.in_window(opening, early, NEW_YORK)
    assert not timing.in_window(opening - timedelta(seconds=1), early, NEW_YORK)
    assert not timing.in_window(utc("2026-03-08 08:00"), early, NEW_YORK)  # 04:00 EDT closes


def test_a_window_inside_the_gap_is_skipped() -> None:
    swallowed = window("02:00", "02:30")
    opening = timing.next_opening(at(NEW_YORK, "2026-03-08 01:00"), swallowed, NEW_YORK)
    assert opening == at(NEW_YORK, "2026-03-09 02:00")


def test_new_york_fall_back_uses_the_first_occurrence() -> None:
    night = window("01:30", "03:00")
    opening = timing.next_opening(utc("2026-11-01 05:00"), night, NEW_YORK)
    assert opening == utc("2026-11-01 05:30")  # 01:30 EDT, not 01:30 EST
    second_0115 = at(NEW_YORK, "2026-11-01 01:15", fold=1)
    assert timing.in_window(second_0115, night, NEW_YORK)
    assert not timing.in_window(utc("2026-11-01 08:00"), night, NEW_YORK)  # 03:00 EST
    # An end in the repeated hour ends at its first occurrence too.
    late = window("00:00", "01:30")
    assert not timing.in_window(at(NEW_YORK, "2026-11-01 01:00", fold=1), late, NEW_YORK)
    assert timing.in_window(at(NEW_YORK, "2026-11-01 01:00", fold=0), late, NEW_YORK)


def test_europe_london_across_summer_time() -> None:
    office = window("09:00", "17:00", WEEKDAYS)
    sunday = utc("2026-03-29 12:00")  # the day clocks go forward
    assert timing.next_opening(sunday, office, LONDON) == utc("2026-03-30 08:00")
    assert timing.next_opening(utc("2026-11-29 12:00"), office, LONDON) == utc("2026-11-30 09:00")
    night = window("01:30", "03:00", ["sun"])
    assert timing.next_opening(utc("2026-03-29 00:00"), night, LONDON) == utc("2026-03-29 01:00")


# --- wait and repeats -----------------------------------------------------------------


def test_wait_is_exact_elapsed_time_across_dst() -> None:
    trigger = at(NEW_YORK, "2026-03-07 12:00")
    due = timing.due_at(trigger, 86_400, None, NEW_YORK)
    assert due == trigger + timedelta(days=1) == utc("2026-03-08 17:00")
    assert due.astimezone(NEW_YORK).hour == 13  # a wall-clock day later would be 12:00


def test_due_at_moves_into_the_window() -> None:
    office = window("09:00", "18:00", WEEKDAYS)
    friday = at(SEOUL, "2026-12-04 10:00")
    assert timing.due_at(friday, 86_400, office, SEOUL) == at(SEOUL, "2026-12-07 09:00")
    assert timing.due_at(friday, 3_600, office, SEOUL) == at(SEOUL, "2026-12-04 11:00")
    assert timing.due_at(friday, 0, None, SEOUL) == friday
    assert timing.due_at(friday, 0, None, SEOUL).tzinfo is UTC


@pytest.mark.parametrize(
    ("k", "expected"),
    [
        (0, "2026-12-01 10:00"),
        (1, "2026-12-08 10:00"),
        (3, "2026-12-22 10:00"),
    ],
)
def test_repeat_due(k: int, expected: str) -> None:
    anchor = at(SEOUL, "2026-11-30 10:00")
    due = timing.repeat_due(anchor, 86_400, 7 * 86_400, k, None, SEOUL)
    assert due == at(SEOUL, expected)


def test_repeat_due_moves_into_the_window_and_refuses_negative_k() -> None:
    office = window("09:00", "18:00", WEEKDAYS)
    friday_evening = at(SEOUL, "2026-12-04 19:00")
    due = timing.repeat_due(friday_evening, 0, 7 * 86_400, 2, office, SEOUL)
    assert due == at(SEOUL, "2026-12-21 09:00")
    with pytest.raises(ValueError, match="negative"):
        timing.repeat_due(friday_evening, 0, 86_400, -1, office, SEOUL)


def test_repeat_counts_from_the_latest_trigger() -> None:
    # Stibee: daily repeat, B opened 1/20 10:00 then again 11:00 -> next send 1/21 11:00.
    first = timing.repeat_due(at(SEOUL, "2027-01-20 10:00"), 0, 86_400, 1, None, SEOUL)
    again = timing.repeat_due(at(SEOUL, "2027-01-20 11:00"), 0, 86_400, 1, None, SEOUL)
    assert (first, again) == (at(SEOUL, "2027-01-21 10:00"), at(SEOUL, "2027-01-21 11:00"))


# --- date firings ---------------------------------------------------------------------

DAY = 86_400


@pytest.mark.parametrize(
    ("value", "year", "offset", "expected_local"),
    [
        ("1990-05-17", 2027, 0, "2027-05-17 09:00"),
        ("05-17", 2027, 0, "2027-05-17 09:00"),
        (" 05-17 ", 2027, 0, "2027-05-17 09:00"),
        ("1990-05-17T23:30:00+09:00", 2027, 0, "2027-05-17 09:00"),
        ("1990-05-17 08:00:00", 2027, 0, "2027-05-17 09:00"),
        ("2000-02-29", 2027, 0, "2027-02-28 09:00"),
        ("2000-02-29", 2028, 0, "2028-02-29 09:00"),
        ("02-29", 2027, 0, "2027-02-28 09:00"),
        ("02-29", 2100, 0, "2100-02-28 09:00"),
        ("05-17", 2027, -3 * DAY, "2027-05-14 09:00"),
        ("05-17", 2027, 7 * DAY, "2027-05-24 09:00"),
        ("01-02", 2027, -3 * DAY, "2026-12-30 09:00"),
        ("2030-05-17", 2027, 0, "2027-05-17 09:00"),  # the written year is not a lower bound
    ],
)
def test_date_firing(value: str, year: int, offset: int, expected_local: str) -> None:
    assert timing.date_firing(value, year, offset, "09:00", SEOUL) == at(SEOUL, expected_local)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "17/05/1990",
        "1990-5-17",
        "2023-02-29",
        "13-01",
        "02-30",
        "00-10",
        "1990-05-17Tnoon",
        "1990-05-17X08:00",
        "soon",
        None,
        19900517,
    ],
)
def test_date_firing_unparsable(value: object) -> None:
    assert timing.date_firing(value, 2027, 0, "09:00", SEOUL) is None
    assert (
        timing.date_firings_between(
            value, 0, "09:00", SEOUL, utc("2020-01-01 00:00"), utc("2030-01-01 00:00")
        )
        == []
    )


def test_date_firing_at_a_local_time_in_the_gap() -> None:
    firing = timing.date_firing("03-08", 2026, 0, "02:30", NEW_YORK)
    assert firing == utc("2026-03-08 07:00")


def test_date_firings_between() -> None:
    firings = timing.date_firings_between(
        "1990-05-17", 0, "09:00", SEOUL, utc("2025-01-01 00:00"), utc("2027-12-31 00:00")
    )
    assert firings == [at(SEOUL, f"{year}-05-17 09:00") for year in (2025, 2026, 2027)]


def test_date_firings_between_bounds_and_offsets() -> None:
    firing = at(SEOUL, "2026-05-17 09:00")
    just = timing.date_firings_between("05-17", 0, "09:00", SEOUL, firing, firing)
    assert just == []
    closed = timing.date_firings_between(
        "05-17", 0, "09:00", SEOUL, firing - timedelta(seconds=1), firing
    )
    assert closed == [firing]
    across = timing.date_firings_between(
        "01-02", -3 * DAY, "09:00", SEOUL, utc("2026-12-01 00:00"), utc("2027-01-31 00:00")
    )
    assert across == [at(SEOUL, "2026-12-30 09:00")]


# --- cron -----------------------------------------------------------------------------


def test_cron_ticks_in_a_zone() -> None:
    ticks = timing.cron_ticks(
        "0 9 * * mon", SEOUL, utc("2026-11-29 00:00"), utc("2026-12-14 00:00")
    )
    assert ticks == [utc("2026-11-30 00:00"), utc("2026-12-07 00:00"), utc("2026-12-14 00:00")]


def test_cron_ticks_bounds_and_limit() -> None:
    after = utc("2026-11-30 00:00")
    hourly = timing.cron_ticks("0 * * * *", ZULU, after, after + timedelta(hours=3))
    assert hourly == [after + timedelta(hours=hours) for hours in (1, 2, 3)]
    assert len(timing.cron_ticks("* * * * *", ZULU, after, after + timedelta(days=9), 5)) == 5
    assert timing.cron_ticks("0 0 30 2 *", ZULU, after, after + timedelta(days=9000)) == []


def test_cron_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    ticks = timing.cron_ticks(
        "30 1 * * *", NEW_YORK, utc("2026-10-31 00:00"), utc("2026-11-03 00:00")
    )
    assert ticks == [
        utc("2026-10-31 05:30"),
        utc("2026-11-01 05:30"),  # 01:30 EDT; 01:30 EST (06:30 UTC) is not a tick
        utc("2026-11-02 06:30"),
    ]
    hourly = timing.cron_ticks(
        "0 * * * *", NEW_YORK, utc("2026-11-01 04:30"), utc("2026-11-01 07:00")
    )
    assert hourly == [utc("2026-11-01 05:00"), utc("2026-11-01 07:00")]
    from_second = timing.cron_ticks(
        "*/30 * * * *", NEW_YORK, at(NEW_YORK, "2026-11-01 01:15", fold=1), utc("2026-11-01 07:30")
    )
    assert from_second == [utc("2026-11-01 07:00"), utc("2026-11-01 07:30")]


def test_cron_ticks_in_the_gap_fire_once_at_its_end() -> None:
    daily = timing.cron_ticks(
        "30 2 * * *", NEW_YORK, utc("2026-03-07 12:00"), utc("2026-03-09 12:00")
    )
    assert daily == [utc("2026-03-08 07:00"), utc("2026-03-09 06:30")]
    halves = timing.cron_ticks(
        "*/30 * * * *", NEW_YORK, utc("2026-03-08 06:00"), utc("2026-03-08 08:00")
    )
    assert halves == [
        utc("2026-03-08 06:30"),
        utc("2026-03-08 07:00"),  # 02:00, 02:30 and 03:00 local are one tick
        utc("2026-03-08 07:30"),
        utc("2026-03-08 08:00"),
    ]


@pytest.mark.parametrize(
    ("cron", "zone", "instant", "expected"),
    [
        ("0 9 * * mon", SEOUL, "2026-12-02 00:00", "2026-11-30 00:00"),
        ("0 9 * * mon", SEOUL, "2026-11-30 00:00", "2026-11-30 00:00"),
        ("0 9 * * mon", SEOUL, "2026-11-29 23:59", "2026-11-23 00:00"),
        ("50 1 * * *", NEW_YORK, "2026-11-01 06:45", "2026-11-01 05:50"),  # 01:45 EST
        ("30 1 * * *", NEW_YORK, "2026-11-01 06:45", "2026-11-01 05:30"),
        ("30 2 * * *", NEW_YORK, "2026-03-08 07:10", "2026-03-08 07:00"),
    ],
)
def test_last_cron_tick(cron: str, zone: ZoneInfo, instant: str, expected: str) -> None:
    assert timing.last_cron_tick(cron, zone, utc(instant)) == utc(expected)


def test_last_cron_tick_none_when_it_never_ticks() -> None:
    assert timing.last_cron_tick("0 0 30 2 *", ZULU, utc("2026-11-30 00:00")) is None


# --- properties -----------------------------------------------------------------------

ZONES = [
    "UTC",
    "Asia/Seoul",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Asia/Kolkata",
]
# Transitions of the zones below in 2026: random instants rarely land near one by chance.
TRANSITIONS = [
    utc(text)
    for text in (
        "2026-03-08 07:00",
        "2026-11-01 06:00",
        "2026-03-29 01:00",
        "2026-10-25 01:00",
        "2026-04-04 15:00",
        "2026-10-03 15:30",
        "2026-04-05 03:00",
        "2026-09-06 04:00",
        "2026-03-08 05:00",
        "2026-11-01 05:00",
    )
]
instants = st.one_of(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
    ),
    st.builds(
        lambda base, seconds: base + timedelta(seconds=seconds),
        st.sampled_from(TRANSITIONS),
        st.integers(-2 * 86_400, 2 * 86_400),
    ),
)
clock_times = st.builds(
    "{:02d}:{:02d}".format, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59])
)
windows = st.builds(
    lambda days, start, end: window(start, end, days),
    st.lists(st.sampled_from([day.value for day in DAY_ORDER]), min_size=1, unique=True),
    clock_times,
    clock_times,
).filter(lambda w: w.start != w.end)


@settings(max_examples=300, deadline=None)
@given(instants, windows, st.sampled_from(ZONES))
def test_next_opening_is_inside_and_not_earlier(
    instant: datetime, send_window: SendWindow, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    opening = timing.next_opening(instant, send_window, zone)
    assert opening >= instant
    assert timing.in_window(opening, send_window, zone)
    if opening > instant:  # nothing opened in between
        assert not timing.in_window(max(instant, opening - timedelta(seconds=1)), send_window, zone)


@settings(max_examples=200, deadline=None)
@given(instants, st.integers(0, 90 * DAY), st.one_of(st.none(), windows), st.sampled_from(ZONES))
def test_due_at_is_never_before_trigger_plus_wait(
    trigger: datetime, wait: int, send_window: SendWindow | None, zone_name: str
) -> None:
    due = timing.due_at(trigger, wait, send_window, ZoneInfo(zone_name))
    assert due >= trigger + timedelta(seconds=wait)
    assert due.tzinfo is UTC


@settings(max_examples=100, deadline=None)
@given(
    instants,
    st.sampled_from(["30 1 * * *", "*/30 * * * *", "0 9 * * mon-fri", "15 2 1 * *"]),
    st.sampled_from(ZONES),
)
def test_last_cron_tick_agrees_with_cron_ticks(
    instant: datetime, cron: str, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    ticks = timing.cron_ticks(cron, zone, instant - timedelta(days=35), instant, limit=5000)
    assert timing.last_cron_tick(cron, zone, instant) == ticks[-1]
    assert ticks == sorted(set(ticks))
