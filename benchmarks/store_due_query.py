"""How long the sender's due query takes on a SQLite store holding many active sends.

Usage: python benchmarks/store_due_query.py [ROWS]   (default 1,000,000)

Fills a temporary store with ROWS pending sends (most due in the next 30 days, 1% overdue,
as a busy runner's queue looks), then times `claim_due(now, 100, ...)` in a rolled-back
transaction, and prints the median and worst of 50 runs in milliseconds.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runner.clock import FakeClock
from runner.store.sqlite import connect, migrate
from runner.store.sqlite_rows import time_text
from runner.store.sqlite_write import SqliteWriteTx

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def fill(db: sqlite3.Connection, rows: int) -> None:
    """Insert `rows` active sends (and the subscribers and automation they reference)."""
    db.execute("PRAGMA synchronous = OFF")  # set-up only; the timed part uses the real pragmas
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO automations VALUES ('bench', 1, 'running', '', '{}', 'a.yaml', NULL, ?,"
        " NULL, NULL)",
        (time_text(NOW),),
    )
    db.executemany(
        "INSERT INTO subscribers (email, fields, groups) VALUES (?, '{}', '[]')",
        ((f"s{i}@example.com",) for i in range(1000)),
    )
    rng = random.Random(7)

    def values(i: int) -> tuple[object, ...]:
        overdue = rng.random() < 0.01
        offset = -rng.uniform(0, 3600) if overdue else rng.uniform(0, 30 * 86400)
        due = time_text(NOW + timedelta(seconds=offset))
        return (f"{i:016x}", i % 1000 + 1, due, time_text(NOW))

    db.executemany(
        "INSERT INTO pending_sends VALUES (?, 'bench', ?, 'x@example.com', ?, 'pending', ?,"
        " '{}', ?, ?, 0, '{}', NULL, 0, NULL, NULL, NULL, NULL)",
        ((*v[:4], v[3], v[0]) for v in map(values, range(rows))),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("ANALYZE")


def main(argv: list[str]) -> int:
    """Fill, time, print."""
    rows = int(argv[0]) if argv else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        db = connect(Path(folder) / "bench.db")
        migrate(db, FakeClock(NOW))
        started = time.perf_counter()
        fill(db, rows)
        print(f"filled {rows:,} pending sends in {time.perf_counter() - started:.1f} s")
        timings = []
        for run in range(50):
            db.execute("BEGIN IMMEDIATE")
            started = time.perf_counter()
            claimed = SqliteWriteTx(db).claim_due(NOW, 100, NOW + timedelta(minutes=1), f"t{run}")
            timings.append((time.perf_counter() - started) * 1000)
            db.execute("ROLLBACK")
        db.close()
    print(
        f"claim_due(limit=100) claimed {len(claimed)}: median {statistics.median(timings):.2f} ms,"
        f" worst {max(timings):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
