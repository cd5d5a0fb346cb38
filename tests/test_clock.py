"""Tests of runner/core/clock.py: the system, fake and file-backed clocks."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runner.cli.clocks import FAKE_CLOCK_VARIABLE, FileClock, clock_from_env
from runner.core.clock import Clock, FakeClock, SystemClock

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_system_clock_is_aware_utc_now() -> None:
    before = datetime.now(UTC)
    now = SystemClock().now()
    assert before <= now <= datetime.now(UTC)
    assert now.tzinfo is UTC


def test_fake_clock_moves_only_when_told() -> None:
    clock: Clock = FakeClock(START)
    assert clock.now() == clock.now() == START
    fake = FakeClock(START)
    fake.advance(timedelta(hours=2))
    assert fake.now() == START + timedelta(hours=2)
    fake.set(datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("Asia/Seoul")))
    assert fake.now() == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert fake.now().tzinfo is UTC


def test_fake_clock_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        FakeClock(datetime(2026, 11, 30))
    with pytest.raises(ValueError, match="naive"):
        FakeClock(START).set(datetime(2026, 11, 30))


def test_file_clock_reads_the_file_on_every_call(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    FileClock.write(path, START)
    assert path.read_text() == "2026-11-30T09:00:00Z\n"
    clock = FileClock(path)
    assert clock.now() == START
    FileClock.write(path, START + timedelta(minutes=5))
    assert clock.now() == START + timedelta(minutes=5)
    assert [p.name for p in tmp_path.iterdir()] == ["clock"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T09:00:00Z", START),
        ("2026-11-30T18:00:00+09:00", START),
        ("  2026-11-30T09:00:00.500000Z\n", START + timedelta(milliseconds=500)),
    ],
)
def test_file_clock_parses_rfc3339(tmp_path: Path, text: str, expected: datetime) -> None:
    path = tmp_path / "clock"
    path.write_text(text)
    now = FileClock(path).now()
    assert now == expected
    assert now.tzinfo is UTC


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-30T09:00:00"])
def test_file_clock_refuses_bad_contents(tmp_path: Path, text: str) -> None:
    path = tmp_path / "clock"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"RFC 3339|naive"):
        FileClock(path).now()


def test_file_clock_write_refuses_naive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="naive"):
        FileClock.write(tmp_path / "clock", datetime(2026, 11, 30))


def test_clock_from_env(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    FileClock.write(path, START)
    chosen = clock_from_env({FAKE_CLOCK_VARIABLE: str(path)})
    assert isinstance(chosen, FileClock)
    assert chosen.now() == START
    assert isinstance(clock_from_env({}), SystemClock)
    assert isinstance(clock_from_env({FAKE_CLOCK_VARIABLE: ""}), SystemClock)


def test_a_file_clock_is_shared_with_another_process(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    FileClock.write(path, START + timedelta(days=3))
    program = "import os; from runner.cli.clocks import clock_from_env; "
    program += "print(clock_from_env(os.environ).now().isoformat())"
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={FAKE_CLOCK_VARIABLE: str(path), "PYTHONPATH": str(Path(__file__).parents[1])},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "2026-12-03T09:00:00+00:00"
