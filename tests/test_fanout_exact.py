"""The schedule fan-out's short path: where a store's SQL test of an audience is exact, so
rows skip the audience check and are not decoded, and the sends written from one encoded
template equal the sends built one by one (real SQLite and PostgreSQL JSON reading)."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from runner.core.clock import FakeClock
from runner.core.conditions import Condition, evaluate, is_instant
from runner.core.prefilter import decided, prefilters
from runner.core.records import Subscriber
from runner.engine import cursors, scheduler, sweeps
from runner.engine import worker as worker_module
from runner.engine.catalog import Catalog
from runner.engine.entering import enter_firing, enter_firing_rows
from runner.store.base import WriteTx
from runner.store.postgres_rows import POSTGRES
from runner.store.rows import dumps
from runner.store.sqlite_rows import SQLITE
from tests.test_apply import Db, apply, automation, db, files
from tests.test_scheduler import CTX, at

__all__ = ["db"]

CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
DAILY = "{type: schedule, cron: '0 9 * * *'}"
NINE = at("2026-03-02T09:00")

# Audience strings `decided` takes: not the JSON text of a list or object, no instant, no NUL.
WORDS = st.text(min_size=1, max_size=6).filter(
    lambda s: not s.startswith(("[", "{")) and not is_instant(s) and "\x00" not in s
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


def sqlite_field_in(fields: dict[str, Any], path: tuple[str, ...], values: list[str]) -> bool:
    """The store's field test, as SQLite runs it on the stored text of `fields`."""
    test = SQLITE.field_in.format(
        dotted=".".join(path), commas=",".join(path), marks=", ".join("?" * len(values))
    )
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE subscribers (fields TEXT)")
        conn.execute("INSERT INTO subscribers VALUES (?)", (dumps(fields),))
        found = conn.execute(f"SELECT count(*) FROM subscribers WHERE {test}", values)
        return bool(found.fetchone()[0])


def decides_as_python(
    matches: Callable[[dict[str, Any], tuple[str, ...], list[str]], bool],
    expected: list[str],
    actual: Any,
    nested: bool,
    same: bool,
) -> None:
    """A store's field test (`matches`) on a field holding `actual`, as the sweep uses it,
    says what the runner's evaluation of the audience says."""
    if same:
        actual = expected[0]
    path = ("a", "b") if nested else ("plan",)
    op, value = ("eq", expected[0]) if len(expected) == 1 else ("in", expected)
    audience = CONDITION.validate_python(
        {"field": "subscriber.fields." + ".".join(path), "op": op, "value": value}
    )
    assert decided(audience, exact_fields=True) and not decided(audience, exact_fields=False)
    fields: dict[str, Any] = {"a": {"b": actual}} if nested else {"plan": actual}
    python = evaluate(audience, {"subscriber": {"email": "a@x.io", "fields": fields}})
    (test,) = prefilters(audience)
    sql = matches(fields, path, list(test.values))  # type: ignore[union-attr]
    # The sweep checks rows holding an escaped NUL in Python; every other row as SQL says.
    short_path = sql and ("\\u0000" not in dumps(fields) or python)
    assert short_path == python


EXPECTED = st.lists(WORDS, min_size=1, max_size=3)
ACTUAL = st.one_of(VALUES, WORDS, st.sampled_from(["pro", "pro\x00x", "pro\x00", "[1]", '{"a":1}']))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(expected=EXPECTED, actual=ACTUAL, nested=st.booleans(), same=st.booleans())
@example(expected=["pro"], actual="pro\x00x", nested=False, same=False)
@example(expected=["pro", "x"], actual="pro\x00", nested=True, same=False)
@example(expected=["1"], actual=1, nested=False, same=False)
@example(expected=["1"], actual=True, nested=False, same=False)
@example(expected=["x"], actual=["x"], nested=False, same=False)
def test_sqlite_field_test_decides_a_string_audience_as_python_does(
    expected: list[str], actual: Any, nested: bool, same: bool
) -> None:
    decides_as_python(sqlite_field_in, expected, actual, nested, same)


def test_postgres_field_test_decides_a_string_audience_as_python_does(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE subscribers (fields TEXT)")

        def matches(fields: dict[str, Any], path: tuple[str, ...], values: list[str]) -> bool:
            test = POSTGRES.field_in.format(
                dotted=".".join(path), commas=",".join(path), marks=", ".join(["%s"] * len(values))
            )
            conn.execute("DELETE FROM subscribers")
            conn.execute("INSERT INTO subscribers VALUES (%s)", (dumps(fields),))
            found = conn.execute(f"SELECT count(*) FROM subscribers WHERE {test}", values)
            row = found.fetchone()
            return row is not None and bool(row[0])

        @settings(max_examples=150, suppress_health_check=list(HealthCheck), deadline=None)
        @given(expected=EXPECTED, actual=ACTUAL, nested=st.booleans(), same=st.booleans())
        @example(expected=["1"], actual=1, nested=False, same=False)
        @example(expected=["true"], actual=True, nested=True, same=False)
        @example(expected=["x"], actual=["x"], nested=False, same=False)
        @example(expected=["x"], actual="x\x00", nested=True, same=False)
        def check(expected: list[str], actual: Any, nested: bool, same: bool) -> None:
            decides_as_python(matches, expected, actual, nested, same)

        check()


@pytest.mark.parametrize(
    ("audience", "exact"),
    [
        (None, True),
        ({"in_group": "vip"}, True),
        (
            {
                "all": [
                    {"in_group": "vip"},
                    {"field": "subscriber.fields.p", "op": "eq", "value": "x"},
                ]
            },
            True,
        ),
        ({"field": "subscriber.fields.p", "op": "in", "value": ["x", "[1]"]}, False),
        ({"field": "subscriber.fields.p", "op": "eq", "value": "{}"}, False),
        ({"field": "subscriber.fields.p", "op": "eq", "value": "a\x00"}, False),
        ({"field": "subscriber.fields.p", "op": "eq", "value": 5}, False),
        ({"field": "subscriber.fields.p", "op": "eq", "value": "2026-01-01"}, False),
        (
            {
                "all": [
                    {"in_group": "vip"},
                    {"field": "subscriber.fields.n", "op": "gt", "value": 1},
                ]
            },
            False,
        ),
        ({"any": [{"in_group": "a"}, {"in_group": "b"}]}, False),
    ],
)
def test_only_audiences_the_sql_tests_cover_are_decided(audience: Any, exact: bool) -> None:
    condition = None if audience is None else CONDITION.validate_python(audience)
    assert decided(condition, exact_fields=True) is exact


def test_sends_from_a_template_equal_sends_built_one_by_one(db: Db) -> None:
    """Same entries and sends (but for ids) both ways, with a wait and a send window in each
    subscriber's zone (so due times differ by subscriber)."""
    extra = "wait: 2h\nsend_window: {start: '10:00', end: '12:00', timezone: subscriber}\n"
    text = [automation(i, trigger=DAILY, extra=extra) for i in ("slow", "fast")]
    apply(db, files(*text), at("2026-03-02T08:00"))
    zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "nowhere", 5, None]
    people = [
        db.subscriber(f"p{n}@x.io", timezone=zones[n % len(zones)], name="é") for n in range(13)
    ]
    catalog = db.catalog()
    event = {"name": "schedule", "data": {"tick": NINE.isoformat()}}

    def work(tx: WriteTx) -> tuple[int, int]:
        slow = enter_firing(tx, CTX, catalog.by_id["slow"], people, NINE, event)
        rows = [(p.id or 0, p.email, p.fields) for p in people]
        fast = enter_firing_rows(tx, CTX, catalog.by_id["fast"], rows, NINE, event)
        return slow, fast

    assert db.write(work) == (13, 13)

    def shape(ident: str) -> list[dict[str, Any]]:
        found = []
        for send in db.sends(ident):
            values = asdict(send)
            assert values.pop("series_id") == values.pop("id")
            values.pop("automation_id")
            found.append(values)
        return sorted(found, key=lambda v: v["subscriber_id"])

    slow, fast = shape("slow"), shape("fast")
    assert slow == fast and len({v["due_at"] for v in fast}) > 2

    def entry_pairs(tx: Any) -> list[tuple[object, ...]]:
        pairs: list[tuple[object, ...]] = []
        for person in people:
            found = [tx.entry(a, person.id) for a in ("slow", "fast")]
            pairs.append(tuple((e.first_at, e.last_at, e.count) for e in found))
        return pairs

    assert all(slow_entry == fast_entry for slow_entry, fast_entry in db.read(entry_pairs))


def test_an_unfinished_sweep_goes_on_without_the_coalescing_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "COALESCE_SECONDS", 3600.0)
    stop, rounds = asyncio.Event(), []

    async def round_() -> bool:
        rounds.append(1)
        if len(rounds) == 5:
            stop.set()
        return True

    async def main() -> None:
        wake = asyncio.Event()
        loop = worker_module._loop("engine", round_, wake, stop, 0.01, lambda: True)
        await asyncio.wait_for(loop, timeout=10)

    asyncio.run(main())
    assert len(rounds) == 5


# --- the page entered by the store itself -------------------------------------------------

PLAN_VALUES = st.sampled_from(["pro", "free", "Pro", "pro\x00", 5, None, ["pro"], {"p": "pro"}])
PEOPLE = st.lists(
    st.tuples(PLAN_VALUES, st.booleans(), st.sampled_from(["live", "live", "off", "gone"])),
    max_size=25,
)
AUDIENCES = st.sampled_from(
    [
        "",
        "audience: {in_group: vip}\n",
        "audience: {field: subscriber.fields.plan, op: eq, value: pro}\n",
        "audience: {all: [{in_group: vip}, {field: subscriber.fields.plan, op: in,"
        " value: [pro, free]}]}\n",
    ]
)
TIMING = st.sampled_from(
    ["", "wait: 2h\n", "send_window: {start: '10:00', end: '12:00', timezone: Europe/Paris}\n"]
)


def firing_result(
    folder: Path, people: list[tuple[Any, bool, str]], extra: str, restart: bool
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The sends (but for ids) and entries two daily firings leave, swept three subscribers a
    page; with `restart`, the store is closed and opened again after every tick."""
    path = folder / "pw.db"
    db = Db(path, FakeClock(at("2026-03-02T08:00")))
    try:
        apply(db, files(automation("daily", trigger=DAILY, extra=extra)), at("2026-03-02T08:00"))
        saved = []
        for n, (plan, vip, state) in enumerate(people):
            person = db.subscriber(f"p{n:02d}@x.io", plan=plan, groups=["vip"] if vip else [])
            person.suppressed = "unsubscribed" if state == "off" else None
            person.deleted_at = NINE if state == "gone" else None

            def keep(tx: WriteTx, person: Subscriber = person) -> Subscriber:
                return tx.save_subscriber(person)

            saved.append(db.write(keep))
        for day in ("02", "03"):
            for second in range(1, 40):
                when = at(f"2026-03-{day}T09:00:{second:02d}")

                def work(tx: WriteTx, when: Any = when) -> bool:
                    catalog = Catalog.build(tx.automations(), tx.status_changes())
                    return scheduler.run_tick(tx, catalog, CTX, when, budget=3).more

                more = db.write(work)
                if restart:
                    db.close()
                    db = Db(path, FakeClock(when))
                if not more:
                    break
        sends = sorted(
            (s.email, s.due_at, s.status, s.trigger_at, dumps(s.trigger_event), s.reason)
            for s in db.sends("daily")
        )
        assert all(s.id == s.series_id for s in db.sends("daily"))
        assert len({s.id for s in db.sends("daily")}) == len(sends)

        def entries(tx: WriteTx) -> list[tuple[Any, ...]]:
            found = [(p.email, tx.entry("daily", p.id or 0)) for p in saved]
            return [(e, x.first_at, x.last_at, x.count) for e, x in found if x is not None]

        return sends, db.write(entries)
    finally:
        db.close()


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(people=PEOPLE, audience=AUDIENCES, timing=TIMING)
@example(
    people=[("pro\x00", True, "live"), ("pro", True, "live"), ("pro", False, "off")],
    audience="audience: {field: subscriber.fields.plan, op: eq, value: pro}\n",
    timing="wait: 2h\n",
)
def test_a_page_entered_in_sql_equals_the_page_entered_in_python(
    people: list[tuple[Any, bool, str]], audience: str, timing: str
) -> None:
    """The store's page (decided audience, one due time) against the runner's full path
    (every subscriber read and evaluated): the same sends and entries over two firings,
    each subscriber once per firing, also when the store restarts after every tick."""
    with tempfile.TemporaryDirectory() as sql_dir, tempfile.TemporaryDirectory() as py_dir:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(cursors, "PAGE", 3)
            patch.setattr(cursors, "SCAN_WINDOW", 5)
            entered = []
            real = cursors.fan_out_window

            def counting(*args: Any) -> list[Any]:
                entered.append(1)
                return real(*args)

            patch.setattr(sweeps, "fan_out_window", counting)
            in_sql = firing_result(Path(sql_dir), people, audience + timing, restart=True)
            assert entered  # the store's page was used
            patch.setattr(sweeps, "decided", lambda *_: False)  # every row to Python
            entered.clear()
            in_python = firing_result(Path(py_dir), people, audience + timing, restart=False)
            assert not entered
    assert in_sql == in_python
    live = [p for p in people if p[2] == "live"]
    if not audience and live:
        assert len(in_sql[0]) == 2 * len(live)
