"""What the start-up integrity check of a SQLite store costs on a big file (issue 10, defect 7).

Builds a store of about --size-mb megabytes (events with ~900-byte payloads, written straight
into the store's schema), then times, on the same file in the same run:

- baseline: reading the whole file sequentially (the I/O floor of any whole-file check);
- the store's start-up without the check (`integrity_check: skip`) and with it (`quick`);
- SQLite's `PRAGMA quick_check` alone (without the store's sequential read-ahead) and its
  full `PRAGMA integrity_check` (which also matches every index to its table).

Each figure is taken twice: with the file in the page cache (warm), and with this file's
pages dropped from it first (cold, `posix_fadvise(DONTNEED)`: other programs keep theirs).

    .venv/bin/python benchmarks/integrity.py [--size-mb 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from runner.core.clock import FakeClock
from runner.store.sqlite_open import open_writer

ROW_PAYLOAD = 900  # bytes of event data per row
CHUNK = 1 << 20
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def build(path: Path, size_mb: int) -> int:
    """A migrated store at `path` grown to about `size_mb` MB; the number of events."""
    db, _ = open_writer(path, FakeClock(START), integrity_check=False)
    db.execute("PRAGMA synchronous = OFF")  # building the fixture, not measured
    filler = "x" * ROW_PAYLOAD
    received = START.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    rows = 0
    while path.stat().st_size < size_mb * 1_000_000:
        batch = [
            (
                "page.viewed",
                f"p{(rows + i) % 200_000}@shop.test",
                json.dumps({"n": rows + i, "pad": filler}),
                received,
            )
            for i in range(20_000)
        ]
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (type, email, data, received_at, processed) VALUES (?, ?, ?, ?, 1)",
            batch,
        )
        db.execute("COMMIT")
        rows += len(batch)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    # Written with synchronous = OFF: flush it now, or the first fsync a measured start-up
    # makes would pay for writing the whole fixture out.
    with path.open("rb") as file:
        os.fsync(file.fileno())
    return rows


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def evict(path: Path) -> None:
    """Drop this file's pages from the page cache (only its own: other programs keep theirs)."""
    with path.open("rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def read_file(path: Path) -> None:
    with path.open("rb", buffering=0) as file:
        while file.read(CHUNK):
            pass


def start_up(path: Path, check: bool) -> None:
    db, _ = open_writer(path, FakeClock(START), integrity_check=check)
    db.close()


def pragma_check(path: Path, pragma: str) -> None:
    """SQLite's own check alone, on a plain connection (no read-ahead)."""
    db = sqlite3.connect(path)
    try:
        assert db.execute(f"PRAGMA {pragma}").fetchone()[0] == "ok"
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the file in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pw-integrity-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "big.db"
        if not path.exists():
            rows = build(path, args.size_mb)
            print(f"built {path} with {rows:,} events")
        size = path.stat().st_size / 1_000_000
        runs: dict[str, Callable[[], object]] = {
            "read the file (baseline)": lambda: read_file(path),
            "start-up, integrity_check: skip": lambda: start_up(path, False),
            "start-up, integrity_check: quick": lambda: start_up(path, True),
            "PRAGMA quick_check alone": lambda: pragma_check(path, "quick_check"),
            "PRAGMA integrity_check alone (full)": lambda: pragma_check(path, "integrity_check"),
        }
        for cache in ("warm", "cold"):
            print(f"\n{size:,.0f} MB database, {cache} page cache")
            print(f"{'':40} {'seconds':>8} {'x read':>8} {'MB/s':>8}")
            baseline = None
            for name, work in runs.items():
                if cache == "warm":
                    read_file(path)
                else:
                    evict(path)
                seconds = timed(work)
                baseline = baseline or seconds
                print(f"{name:40} {seconds:8.2f} {seconds / baseline:8.1f} {size / seconds:8.0f}")


if __name__ == "__main__":
    main()
