"""SQLite's stored time text: the fast isoformat path gives exactly strftime's text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.store.sqlite_rows import parse_time, time_text

_REFERENCE = "%Y-%m-%dT%H:%M:%S.%fZ"

offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
).map(lambda d: timezone(timedelta(minutes=int(d.total_seconds() // 60))))
instants = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.one_of(st.just(UTC), offsets),
)


@given(instants)
def test_same_text_as_strftime(instant: datetime) -> None:
    assert time_text(instant) == instant.astimezone(UTC).strftime(_REFERENCE)


@given(instants)
def test_whole_seconds_keep_their_microseconds(instant: datetime) -> None:
    whole = instant.replace(microsecond=0)
    text = time_text(whole)
    assert text == whole.astimezone(UTC).strftime(_REFERENCE)
    assert text.endswith(".000000Z")
    if whole.astimezone(UTC).year >= 1000:  # strftime does not pad earlier years
        assert parse_time(text) == whole


@given(instants, instants)
def test_text_sorts_like_the_instant(a: datetime, b: datetime) -> None:
    if a.astimezone(UTC).year >= 1000 and b.astimezone(UTC).year >= 1000:
        assert (time_text(a) < time_text(b)) == (a < b)


def test_naive_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        time_text(datetime(2026, 1, 1))


def test_fixed_width_examples() -> None:
    assert time_text(datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))) == (
        "2026-02-28T23:30:00.000000Z"
    )
    assert time_text(datetime(2026, 1, 1, 0, 0, 0, 7, tzinfo=UTC)) == "2026-01-01T00:00:00.000007Z"


@given(st.lists(instants, min_size=1, max_size=6), st.lists(st.integers(0, 5), max_size=30))
def test_repeated_instants_keep_their_own_text(pool: list[datetime], picks: list[int]) -> None:
    # time_text remembers the last two instants: any order of repeats gives each its text
    for pick in picks:
        instant = pool[pick % len(pool)]
        assert time_text(instant) == instant.astimezone(UTC).strftime(_REFERENCE)
