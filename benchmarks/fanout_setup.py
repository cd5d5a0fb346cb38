"""The fan-out benchmark's setup and floor (benchmarks/fanout.py): a store with the
automation and many subscribers bulk-loaded straight into its own table, counts read beside
the store, resident memory, and the bare `INSERT ... SELECT` the firing is compared with."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from runner.core.clock import FakeClock
from runner.core.records import AppliedAutomation, HistoryEntry
from runner.store import open_store
from runner.store.base import WriteTx

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
FIRING = datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC)  # just past the 09:00 tick
SOURCE = """\
id: fan
status: running
trigger: {type: schedule, cron: "0 9 * * *", timezone: UTC}
audience: {field: subscriber.fields.plan, op: eq, value: pro}
email:
  from: "Shop <news@shop.test>"
  subject: "This week at the shop"
  text: "Hello {{ subscriber.fields.name }}"
"""
CHUNK = 20_000


# --- setup ------------------------------------------------------------------------------


def rows(start: int, stop: int) -> Iterator[tuple[object, ...]]:
    """Subscriber rows (email, fields, groups, created_at); every tenth is on plan pro."""
    created = "2026-01-01T00:00:00.000000Z"
    for index in range(start, stop):
        plan = "pro" if index % 10 == 0 else "free"
        fields = json.dumps({"name": f"S{index}", "plan": plan}, separators=(",", ":"))
        yield f"s{index}@shop.test", fields, "[]", created


def bulk_load(url: str, count: int) -> None:
    """Insert `count` subscribers in chunked transactions (direct SQL: setup only)."""
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        sql = "INSERT INTO subscribers (email, fields, groups, created_at) VALUES (?, ?, ?, ?)"
        for start in range(0, count, CHUNK):
            with db:
                db.executemany(sql, rows(start, min(count, start + CHUNK)))
        db.close()
        return
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        copy_sql = "COPY subscribers (email, fields, groups, created_at) FROM STDIN"
        with cursor.copy(copy_sql) as copy:
            for row in rows(0, count):
                copy.write_row(row)
        cursor.execute("ANALYZE subscribers")


async def seed(url: str, count: int) -> None:
    """The schema, the running automation (started at T0) and the subscribers."""
    store = open_store(url, FakeClock(T0))
    row = AppliedAutomation(
        "fan", 1, "running", SOURCE, {}, "automations/fan.yaml", None, T0, T0, None
    )

    def work(tx: WriteTx) -> None:
        tx.save_automation(row)
        tx.add_history(HistoryEntry("fan", T0, "status", None, "running"))

    await store.write(work)
    floor = AppliedAutomation(
        "floor", 1, "draft", SOURCE.replace("fan", "floor"), {}, "f.yaml", None, T0, None, None
    )
    await store.write(lambda tx: tx.save_automation(floor))
    await store.close()
    bulk_load(url, count)


def count_sql(url: str, sql: str) -> int:
    """One number from a fresh connection (outside the store, so it never waits on it)."""
    if url.startswith("sqlite"):
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            return int(db.execute(sql).fetchone()[0])
        finally:
            db.close()
    import psycopg

    with psycopg.connect(url) as conn:
        found = conn.execute(sql).fetchone()
        return int(found[0]) if found else 0


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident size now, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- the floor: bare chunked INSERT ... SELECT on the same file --------------------------


def floor(url: str, count: int) -> float:
    """Seconds for the bare SQL to create the same pending sends (automation `floor`)."""
    sqlite = url.startswith("sqlite")
    mark = "?" if sqlite else "%s"
    test = "json_extract(fields, '$.plan')" if sqlite else "(fields::json ->> 'plan')"
    sql = (
        "INSERT INTO pending_sends (id, automation_id, subscriber_id, email, due_at, status,"
        " trigger_at, trigger_event, created_at, series_id, repeat_index, overrides, attempts)"
        f" SELECT 'floor-' || id, 'floor', id, email, {mark}, 'pending', {mark}, {mark},"
        f" {mark}, 'floor-' || id, 0, '{{}}', 0 FROM subscribers"
        f" WHERE id > {mark} AND id <= {mark} AND deleted_at IS NULL AND suppressed IS NULL"
        f" AND {test} = 'pro'"
    )
    when: object = FIRING.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if sqlite else FIRING
    event = json.dumps({"name": "schedule", "data": {"tick": FIRING.isoformat()}})
    started = time.perf_counter()
    if sqlite:
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        for low in range(0, count, 5 * CHUNK):
            with db:
                db.execute(sql, (when, when, event, when, low, low + 5 * CHUNK))
        db.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            for low in range(0, count, 5 * CHUNK):
                with conn.transaction():
                    conn.execute(sql, (when, when, event, when, low, low + 5 * CHUNK))
    return time.perf_counter() - started
