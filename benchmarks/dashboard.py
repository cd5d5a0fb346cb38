"""Dashboard benchmark: time per page with 1,000 automations and 1,000,000 messages in SQLite,
next to baselines measured in the same run (`GET /healthz`, `GET /v1/automations`), and the
query plans of the stats queries (index use, no scans of the big tables).

A real `serve` (the tests' harness: uvicorn on 127.0.0.1, a fake clock) over a temp folder;
the rows are generated in SQL inside the store's own write transactions. Times are measured
on the server's event loop (the app called in process through httpx's ASGI transport, its
loop shared with the running server), so they are the server's time without the network.
Target: under 200 ms per page.

    .venv/bin/python benchmarks/dashboard.py [--automations 1000] [--messages 1000000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from runner.server.ui import highlight  # noqa: E402
from runner.store.base import ReadTx, WriteTx  # noqa: E402
from runner.store.sqlite_read import SqliteReadTx  # noqa: E402
from runner.store.sqlite_rows import time_text  # noqa: E402
from tests.harness import START, Harness, write_repo  # noqa: E402

PEOPLE = 10_000
DAYS = 90  # messages are spread over the last DAYS days
CHUNK = 50_000
RUNS = 25

AUTOMATION = """\
id: {ident}
name: Automation {n}
labels: {{team: t{team}}}
status: running
trigger: {{type: event, event: purchase}}
email:
  from: "Shop <news@shop.test>"
  subject: "Thanks {{{{ subscriber.email }}}}"
  html: "<p>Thanks</p>"
"""

# n runs over one chunk of message numbers; every column is derived from n.
_NUMBERS = "WITH RECURSIVE k(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM k WHERE n < ?)"
_SENDS = (
    _NUMBERS + " INSERT INTO pending_sends (id, automation_id, subscriber_id, email, due_at,"
    " status, trigger_at, trigger_event, created_at, series_id, repeat_index, overrides,"
    " attempts) SELECT printf('s%08d', n), printf('a%04d', n / :per),"
    " n % :people + 1, printf('p%05d@bench.test', n % :people), :now, 'sent', :now, '{}',"
    " :now, printf('s%08d', n), 0, '{}', 1 FROM k"
)
_MESSAGES = (
    _NUMBERS + " INSERT INTO messages (id, pending_send_id, automation_id, subscriber_id,"
    " to_address, from_address, subject, html, text, headers, provider, provider_type,"
    " provider_message_id, sent_at, revision, listeners, status)"
    " SELECT printf('m%08d', n), printf('s%08d', n), printf('a%04d', n / :per),"
    " n % :people + 1, printf('p%05d@bench.test', n % :people), 'news@shop.test', 'Thanks',"
    " '<p>Thanks</p>', NULL, '{}', 'default', 'outbox', printf('m%08d', n),"
    " strftime('%Y-%m-%dT%H:%M:%S', :start, printf('-%d minutes', (n * 7) % :minutes))"
    " || '.000000Z', 1 + (n % :per) * 3 / :per, '[]', 'sent' FROM k"
)
# Three messages in ten are opened, one in ten clicked.
_EVENTS = (
    _NUMBERS + " INSERT INTO message_events (provider, provider_event_id, message_id, type,"
    " occurred_at, received_at, url, bounce)"
    " SELECT 'default', printf('e%08d', n), printf('m%08d', n / 3),"
    " CASE WHEN n % 3 = 0 THEN 'clicked' ELSE 'opened' END, :now, :now,"
    " CASE WHEN n % 3 = 0 THEN 'https://shop.test/x' END, NULL FROM k"
    " WHERE (n / 3) % 10 < 3 AND (n % 3 <> 0 OR (n / 3) % 10 = 0)"
)


def generate(h: Harness, automations: int, messages: int) -> None:
    """People, sends, messages (with revisions 1-3) and provider events, in chunks."""
    now = time_text(h.clock.now())
    named = {
        "per": max(messages // automations, 1),  # each automation's messages are contiguous
        "people": PEOPLE,
        "now": now,
        "start": h.clock.now().strftime("%Y-%m-%d %H:%M:%S"),
        "minutes": DAYS * 24 * 60,
    }

    def people(tx: WriteTx) -> None:
        db = tx.db  # type: ignore[attr-defined]
        db.executemany(
            "INSERT INTO subscribers (email, fields, groups, created_at) VALUES (?, '{}', '[]', ?)",
            [(f"p{n:05d}@bench.test", now) for n in range(PEOPLE)],
        )
        for ident in range(automations):
            for revision in (2, 3):
                db.execute(
                    "INSERT INTO automation_revisions VALUES (?, ?, ?, ?)",
                    (f"a{ident:04d}", revision, f"{revision:040d}", now),
                )
        db.execute("INSERT INTO commits VALUES (?, 'Shorter subject line')", (f"{3:040d}",))

    h.write(people)
    for first in range(0, messages, CHUNK):
        last = min(first + CHUNK, messages) - 1

        def chunk(tx: WriteTx, first: int = first, last: int = last) -> None:
            db = tx.db  # type: ignore[attr-defined]
            for sql in (_SENDS, _MESSAGES):
                db.execute(_positional(sql, first, last, named))
            db.execute(_positional(_EVENTS, first * 3, last * 3 + 2, named))

        store = h.store
        assert store is not None
        h.start(partial(store.write, chunk)).result(600)
        print(f"  rows: {last + 1:,} messages", end="\r", flush=True)
    print()


def _positional(sql: str, first: int, last: int, named: dict[str, Any]) -> Any:
    """`sql` with its two `?` and its `:names` bound as literals (one statement, no driver
    quirks mixing both placeholder kinds)."""
    text = sql.replace("?", str(first), 1).replace("?", str(last), 1)
    for name, value in sorted(named.items(), key=lambda item: -len(item[0])):
        literal = str(value) if isinstance(value, int) else "'" + value + "'"
        text = text.replace(f":{name}", literal)
    return text


def timed(h: Harness, path: str | list[str], runs: int = RUNS) -> tuple[float, float]:
    """Median and 95th percentile in ms of the server's time for GET `path` `runs` times, or
    once for each of a list of paths (a 200 each time): the app is called on the server's
    own event loop, without the network."""
    paths = [path] * runs if isinstance(path, str) else path
    assert h.app is not None
    cookies = dict(h.http.cookies)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=h.app), base_url="http://127.0.0.1", cookies=cookies
    )

    async def measure() -> list[float]:
        times = []
        for one in paths:
            began = time.perf_counter()
            response = await client.get(one)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (one, response.status_code, response.text[:300])
        return times

    times = sorted(h.call(measure))
    return statistics.median(times), times[min(int(len(times) * 0.95), len(times) - 1)]


def highlight_cost(reference: float) -> str:
    """The first view's highlighting of a 100 KB HTML template with Jinja tags (uncached;
    the budget highlights its first lines), in process, next to the baseline."""
    line = '<td class="x"><a href="{{ url }}?id={{ n }}">{{ item.name | e }}</a></td>\n'
    text = line * (100_000 // len(line))
    runs = []
    for n in range(RUNS):
        began = time.perf_counter()
        highlight.highlighted(f"<!-- {n} -->\n{text}", "html")
        runs.append((time.perf_counter() - began) * 1000)
    median = statistics.median(runs)
    return (
        f"highlighting a {len(text) // 1000} KB HTML template, uncached (its first"
        f" {highlight.HIGHLIGHTED_CHARS['html'] // 1024} KiB): {median:.1f} ms median,"
        f" {max(runs):.1f} ms at most, x{median / reference:.2f} GET /v1/automations"
    )


def plans(h: Harness, automation: str) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of the dashboard's stats queries."""
    since = time_text(h.clock.now() - timedelta(days=29))
    queries = SqliteReadTx.dashboard

    def read(tx: ReadTx) -> dict[str, list[str]]:
        db = tx.db  # type: ignore[attr-defined]
        found = {}
        for name, sql, args in [
            ("stats by revision", queries.by_revision, (automation,)),
            ("stats by day", queries.by_day, (automation, since)),
            ("top links", queries.top_links, (automation, 10)),
            (
                "sends per day",
                queries.sends_per_day.format(ids="automation_id IN (?, ?)"),
                (automation, "a0001", since),
            ),
            (
                "recent counts (the list's rates)",
                queries.recent.format(ids="m.automation_id IN (?, ?)"),
                (automation, "a0001", since),
            ),
            ("totals", SqliteReadTx.message_stats, (automation,)),
        ]:
            rows = db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
            found[name] = [row["detail"] for row in rows]
        return found

    return h.read(read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--automations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build in this new folder and keep it")
    options = parser.parse_args()
    if options.keep is not None:
        options.keep.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as temporary:
        folder = options.keep or temporary
        repo = Path(folder) / "repo"
        files = {
            f"a{n:04d}": AUTOMATION.format(ident=f"a{n:04d}", n=n, team=n % 10)
            for n in range(options.automations)
        }
        write_repo(repo, files)
        began = time.perf_counter()
        with Harness(repo, start=START + timedelta(days=DAYS)) as h:
            print(
                f"applied {options.automations} automations in {time.perf_counter() - began:.1f} s"
            )
            began = time.perf_counter()
            generate(h, options.automations, options.messages)
            print(f"generated {options.messages:,} messages in {time.perf_counter() - began:.1f} s")
            h.call(lambda: h.store.drop_old_copies())  # type: ignore[union-attr]
            middle = f"a{options.automations // 2:04d}"
            h.http.get("/ui")  # the anonymous session cookie, and warm caches
            baseline = {
                "GET /healthz": timed(h, "/healthz"),
                "GET /v1/automations": timed(h, "/v1/automations", 10),
            }
            # Each automation's first view highlights its file (later views hit the cache).
            first_views = [f"/ui/automations/a{n:04d}" for n in range(RUNS)]
            pages: dict[str, str | list[str]] = {
                "/ui (first 50 of 1,000)": "/ui",
                "/ui?page=20": "/ui?page=20",
                "/ui?label=team=t3": "/ui?label=team%3Dt3",
                f"/ui/automations/{middle}": f"/ui/automations/{middle}",
                f"/ui/automations/..., first view of {RUNS}": first_views,
                "/ui/people?email=...": "/ui/people?email=p00042%40bench.test",
                "/ui/messages": "/ui/messages",
                "/ui/messages/{id}": f"/ui/messages/m{options.messages // 2:08d}",
                f"/v1/automations/{middle}/stats?by=revision": (
                    f"/v1/automations/{middle}/stats?by=revision"
                ),
            }
            reference = baseline["GET /v1/automations"][0]
            print(f"\n{'request':48} {'median ms':>10} {'p95 ms':>8} {'x /v1/automations':>18}")
            for name, (median, p95) in baseline.items():
                print(f"{name:48} {median:10.1f} {p95:8.1f} {median / reference:18.2f}")
            for name, path in pages.items():
                median, p95 = timed(h, path)
                verdict = "" if p95 < 200 else "  over 200 ms"
                print(f"{name:48} {median:10.1f} {p95:8.1f} {median / reference:18.2f}{verdict}")
            print(f"\n{highlight_cost(reference)}")
            print("\nquery plans (SQLite):")
            for name, steps in plans(h, middle).items():
                print(f"  {name}:")
                for step in steps:
                    print(f"    {step}")


if __name__ == "__main__":
    main()
