"""Condition evaluation (docs/file-format.md "Conditions"): every op against present, missing
and mistyped fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from runner.core.conditions import Condition, evaluate, lookup

ADAPTER: TypeAdapter[Any] = TypeAdapter(Condition)
MISSING = object()
PATH = "subscriber.fields.x"


def cond(data: dict[str, Any]) -> Any:
    """A condition built through the pydantic model, as the loader builds it."""
    return ADAPTER.validate_python(data)


def context(
    fields: dict[str, Any] | None = None,
    groups: list[str] | None = None,
    event: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "subscriber": {"email": "a@b.example", "fields": fields or {}, "groups": groups or []},
        "event": event or {"name": "purchase", "data": {}, "occurred_at": None},
    }


def check(field_value: Any, op: str, value: Any = MISSING) -> bool:
    data: dict[str, Any] = {"field": PATH, "op": op}
    if value is not MISSING:
        data["value"] = value
    fields = {} if field_value is MISSING else {"x": field_value}
    return evaluate(cond(data), context(fields))


# (field value or MISSING, op, condition value, expected)
TABLE: list[tuple[Any, str, Any, bool]] = [
    # eq
    ("pro", "eq", "pro", True),
    ("pro", "eq", "free", False),
    (MISSING, "eq", "pro", False),
    (1, "eq", "1", False),
    (True, "eq", 1, False),
    (1, "eq", True, False),
    (0, "eq", False, False),
    (1, "eq", 1.0, True),
    (2.5, "eq", 2.5, True),
    (None, "eq", "x", False),
    (["a", "b"], "eq", ["a", "b"], True),
    (["a", "b"], "eq", ["b", "a"], False),
    ([1], "eq", [True], False),
    (["a"], "eq", "a", False),
    ({"a": 1}, "eq", "a", False),
    (False, "eq", False, True),
    # ne
    ("pro", "ne", "free", True),
    ("pro", "ne", "pro", False),
    (MISSING, "ne", "pro", True),
    (1, "ne", "1", True),
    (True, "ne", 1, True),
    (1, "ne", 1.0, False),
    (None, "ne", "x", True),
    # in
    ("b", "in", ["a", "b"], True),
    ("c", "in", ["a", "b"], False),
    (MISSING, "in", ["a"], False),
    (1, "in", ["1"], False),
    (True, "in", [1], False),
    (1, "in", [True], False),
    (1.0, "in", [1, 2], True),
    (["a"], "in", ["a"], False),
    (None, "in", ["a"], False),
    # not_in
    ("c", "not_in", ["a", "b"], True),
    ("b", "not_in", ["a", "b"], False),
    (MISSING, "not_in", ["a"], True),
    (1, "not_in", ["1"], True),
    (True, "not_in", [1], True),
    (2, "not_in", [2.0], False),
    # contains: substring on strings
    ("hello world", "contains", "lo w", True),
    ("hello", "contains", "xyz", False),
    (MISSING, "contains", "a", False),
    (123, "contains", "1", False),
    ("123", "contains", 1, False),
    (None, "contains", "a", False),
    # contains: membership on lists, by the same typing rule
    (["a", "b"], "contains", "b", True),
    (["a", "b"], "contains", "c", False),
    (["ab"], "contains", "a", False),
    ([1, 2], "contains", "1", False),
    ([1, 2], "contains", 2.0, True),
    ([True], "contains", 1, False),
    ([1], "contains", True, False),
    ([], "contains", "a", False),
    # starts_with
    ("hello", "starts_with", "he", True),
    ("hello", "starts_with", "lo", False),
    (MISSING, "starts_with", "he", False),
    (123, "starts_with", "1", False),
    ("123", "starts_with", 1, False),
    (["he"], "starts_with", "he", False),
    # gt
    (5, "gt", 3, True),
    (3, "gt", 5, False),
    (5, "gt", 5, False),
    (MISSING, "gt", 3, False),
    ("5", "gt", 3, False),
    (5, "gt", "3", False),
    (True, "gt", 0, False),
    (True, "gt", False, False),
    (5.5, "gt", 5, True),
    ("b", "gt", "a", True),
    ("a", "gt", "b", False),
    ([5], "gt", 3, False),
    (None, "gt", 0, False),
    # gte
    (5, "gte", 5, True),
    (5, "gte", 5.0, True),
    (4, "gte", 5, False),
    (MISSING, "gte", 5, False),
    ("5", "gte", 5, False),
    ("b", "gte", "b", True),
    # lt
    (3, "lt", 5, True),
    (5, "lt", 3, False),
    (MISSING, "lt", 5, False),
    (None, "lt", 1, False),
    (False, "lt", True, False),
    (-1.5, "lt", -1, True),
    # lte
    (5, "lte", 5, True),
    (6, "lte", 5, False),
    (MISSING, "lte", 5, False),
    ("a", "lte", 1, False),
    ("a", "lte", "a", True),
    # exists (present null counts as present)
    ("x", "exists", MISSING, True),
    (None, "exists", MISSING, True),
    (MISSING, "exists", MISSING, False),
    ("x", "exists", True, True),
    (MISSING, "exists", True, False),
    ("x", "exists", False, False),
    (None, "exists", False, False),
    (MISSING, "exists", False, True),
]


@pytest.mark.parametrize(("field_value", "op", "value", "expected"), TABLE)
def test_op_table(field_value: Any, op: str, value: Any, expected: bool) -> None:
    assert check(field_value, op, value) is expected


def test_table_covers_every_op_present_and_missing() -> None:
    from runner.core.conditions import Op

    for op in Op:
        rows = [row for row in TABLE if row[1] == op.value]
        assert any(row[0] is MISSING for row in rows), op
        assert any(row[3] for row in rows if row[0] is not MISSING), op
        assert any(not row[3] for row in rows if row[0] is not MISSING), op


# (field value, op, condition value, expected): ISO-8601 strings compare as instants
ISO_TABLE: list[tuple[str, str, Any, bool]] = [
    ("2026-01-01T09:00:00+09:00", "eq", "2026-01-01T00:00:00Z", True),
    ("2026-01-01T09:00:00+09:00", "ne", "2026-01-01T00:00:00Z", False),
    ("2026-01-01T09:00:00+09:00", "eq", "2026-01-01T09:00:00Z", False),
    ("2026-01-01T00:00:00.000Z", "eq", "2026-01-01T00:00:00+00:00", True),
    ("2026-01-01T00:00:00z", "eq", "2026-01-01T00:00:00Z", True),
    # a string comparison would say the opposite for these two
    ("2026-01-01T08:00:00+09:00", "lt", "2026-01-01T00:00:00Z", True),
    ("2026-01-01T08:00:00+09:00", "gt", "2026-01-01T00:00:00Z", False),
    ("2025-12-31T20:00:00-05:00", "gt", "2026-01-01T00:00:00Z", True),
    ("2025-12-31T20:00:00-05:00", "gte", "2026-01-01T01:00:00Z", True),
    ("2025-12-31T20:00:00-05:00", "lte", "2026-01-01T01:00:00Z", True),
    # date-only is midnight UTC; naive date-times are UTC
    ("2026-01-01", "eq", "2026-01-01T00:00:00Z", True),
    ("2026-01-01", "lt", "2026-01-01T00:00:01Z", True),
    ("2026-01-01", "gte", "2026-01-01T09:00:00+09:00", True),
    ("2026-01-01T00:00:00", "eq", "2026-01-01T00:00:00+00:00", True),
    ("2026-01-01 09:30", "gt", "2026-01-01T09:00:00Z", True),
    # only one side parses: plain string comparison
    ("2026-13-01", "gt", "2026-02-01", True),
    ("2026-01-01T00:00:00Z", "eq", "2026-01-01T00:00:00+00:00 ", False),
    ("20260101", "eq", "2026-01-01", False),
    ("next week", "lt", "2026-01-01", False),
    # the typing rule still holds: a number never equals an ISO string
    ("2026", "eq", 2026, False),
    # in, not_in and list membership use the same instant equality
    ("2026-01-01T00:00:00Z", "in", ["2026-01-01T09:00:00+09:00"], True),
    ("2026-01-01T00:00:00Z", "not_in", ["2026-01-01T09:00:00+09:00"], False),
]


@pytest.mark.parametrize(("field_value", "op", "value", "expected"), ISO_TABLE)
def test_iso_instants(field_value: str, op: str, value: Any, expected: bool) -> None:
    assert check(field_value, op, value) is expected


def test_list_membership_compares_instants() -> None:
    dates = ["2026-01-01T09:00:00+09:00"]
    assert check(dates, "contains", "2026-01-01T00:00:00Z") is True
    assert check(dates, "contains", "2026-01-01T09:00:00Z") is False


def test_event_occurred_at_compares_as_instant() -> None:
    where = cond({"field": "event.occurred_at", "op": "gte", "value": "2026-03-01T00:00:00+09:00"})
    event: dict[str, Any] = {"name": "purchase", "data": {}, "occurred_at": "2026-02-28T15:00:00Z"}
    assert evaluate(where, context(event=event)) is True
    event["occurred_at"] = "2026-02-28T14:59:59Z"
    assert evaluate(where, context(event=event)) is False
    event["occurred_at"] = None  # present null: not a string, so no ordering
    assert evaluate(where, context(event=event)) is False


def test_lookup() -> None:
    ctx = context({"a": {"b": 1}, "n": None, "items": [{"b": 2}], "s": "text"})
    assert lookup(ctx, "subscriber.fields.a.b") == (True, 1)
    assert lookup(ctx, "subscriber.fields.a") == (True, {"b": 1})
    assert lookup(ctx, "subscriber.fields.n") == (True, None)
    assert lookup(ctx, "subscriber.fields.a.c") == (False, None)
    assert lookup(ctx, "subscriber.fields.items.0.b") == (False, None)
    assert lookup(ctx, "subscriber.fields.s.x") == (False, None)
    assert lookup(ctx, "subscriber.email") == (True, "a@b.example")
    assert lookup({"subscriber": {}}, "event.name") == (False, None)


def test_path_through_a_list_is_missing() -> None:
    ctx = context({"items": [{"sku": "A"}]})
    path = "subscriber.fields.items.0.sku"
    assert evaluate(cond({"field": path, "op": "eq", "value": "A"}), ctx) is False
    assert evaluate(cond({"field": path, "op": "ne", "value": "A"}), ctx) is True
    assert evaluate(cond({"field": path, "op": "exists"}), ctx) is False


def test_missing_subscriber_or_event_is_missing_field() -> None:
    assert evaluate(cond({"field": "event.data.total", "op": "not_in", "value": [1]}), {}) is True
    assert evaluate(cond({"field": "event.data.total", "op": "gt", "value": 0}), {}) is False
    assert evaluate(cond({"in_group": "vip"}), {}) is False


@pytest.mark.parametrize(
    ("groups", "expected"),
    [(["vip", "staff"], True), (["staff"], False), ([], False), ("vips", False), (None, False)],
)
def test_in_group(groups: Any, expected: bool) -> None:
    ctx = {"subscriber": {"email": "a@b.example", "fields": {}, "groups": groups}}
    assert evaluate(cond({"in_group": "vip"}), ctx) is expected


NESTED = {
    "all": [
        {"field": "subscriber.fields.plan", "op": "ne", "value": "enterprise"},
        {"not": {"in_group": "staff"}},
        {
            "any": [
                {"field": "event.data.total", "op": "gt", "value": 100},
                {"field": "subscriber.fields.vip", "op": "eq", "value": True},
            ]
        },
    ]
}


@pytest.mark.parametrize(
    ("fields", "groups", "total", "expected"),
    [
        ({"plan": "pro"}, [], 150, True),
        ({}, [], 150, True),  # a missing plan is `ne enterprise`
        ({"plan": "enterprise"}, [], 150, False),
        ({"plan": "pro"}, ["staff"], 150, False),
        ({"plan": "pro"}, [], 50, False),
        ({"plan": "pro", "vip": True}, [], 50, True),
        ({"plan": "pro", "vip": 1}, [], 50, False),
        ({"plan": "pro"}, [], "150", False),
    ],
)
def test_nested_all_any_not(
    fields: dict[str, Any], groups: list[str], total: Any, expected: bool
) -> None:
    event = {"name": "purchase", "data": {"total": total}, "occurred_at": None}
    assert evaluate(cond(NESTED), context(fields, groups, event)) is expected


CHANGED_TO_VIP = {
    "all": [
        {"field": "event.data.changed", "op": "contains", "value": "grade"},
        {"field": "subscriber.fields.grade", "op": "eq", "value": "VIP"},
    ]
}


@pytest.mark.parametrize(
    ("data", "grade", "expected"),
    [
        ({"changed": ["name", "grade"], "previous": {"grade": "Gold"}}, "VIP", True),
        ({"changed": ["name"], "previous": {"name": "A"}}, "VIP", False),
        ({"changed": ["grade"], "previous": {"grade": "VIP"}}, "Gold", False),
        ({}, "VIP", False),
        ({"changed": "upgrade"}, "VIP", True),  # a string `changed` is a substring test
    ],
)
def test_field_changed_to_a_value(data: dict[str, Any], grade: str, expected: bool) -> None:
    """The docs/events.md example: `where` sees the subscriber after the update."""
    event = {"name": "subscriber.updated", "data": data, "occurred_at": None}
    assert evaluate(cond(CHANGED_TO_VIP), context({"grade": grade}, event=event)) is expected


# --- properties -----------------------------------------------------------------------------

KEYS = ["a", "b", "grade"]
PATHS = [
    "subscriber.fields.a",
    "subscriber.fields.b",
    "subscriber.fields.grade",
    "subscriber.fields.a.b",
    "subscriber.email",
    "event.data.a",
    "event.name",
    "event.occurred_at",
]
ISO = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [None, UTC, timezone(timedelta(hours=9)), timezone(-timedelta(hours=5))]
    ),
)
SCALARS = (
    st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True, allow_infinity=False, width=32)
    | st.sampled_from(["a", "b", "ab", "grade", "VIP", "", "1"])
    | ISO.map(datetime.isoformat)
)
VALUES = st.recursive(
    st.none() | SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=6,
)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    fields = draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3))
    data = draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=2))
    groups = draw(st.lists(st.sampled_from(["vip", "staff"]), max_size=2))
    occurred = draw(st.none() | ISO.map(datetime.isoformat))
    return context(fields, groups, {"name": "purchase", "data": data, "occurred_at": occurred})


@st.composite
def field_conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(
        st.sampled_from(
            [
                "eq",
                "ne",
                "in",
                "not_in",
                "contains",
                "starts_with",
                "gt",
                "gte",
                "lt",
                "lte",
                "exists",
            ]
        )
    )
    path = draw(st.sampled_from(PATHS))
    if op == "exists":
        flag = draw(st.none() | st.booleans())
        return (
            {"field": path, "op": op} if flag is None else {"field": path, "op": op, "value": flag}
        )
    lists = st.lists(SCALARS, max_size=3)
    value = draw(lists if op in ("in", "not_in") else SCALARS | lists)
    return {"field": path, "op": op, "value": value}


CONDITIONS = st.recursive(
    field_conditions() | st.sampled_from(["vip", "staff"]).map(lambda g: {"in_group": g}),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3).map(lambda c: {"all": c})
        | st.lists(inner, min_size=1, max_size=3).map(lambda c: {"any": c})
        | inner.map(lambda c: {"not": c})
    ),
    max_leaves=5,
)


@given(CONDITIONS, contexts())
def test_not_inverts(data: dict[str, Any], ctx: dict[str, Any]) -> None:
    assert evaluate(cond({"not": data}), ctx) is (not evaluate(cond(data), ctx))


@given(st.sampled_from(PATHS), SCALARS | st.lists(SCALARS, max_size=3), contexts())
def test_ne_is_not_eq(path: str, value: Any, ctx: dict[str, Any]) -> None:
    eq = evaluate(cond({"field": path, "op": "eq", "value": value}), ctx)
    ne = evaluate(cond({"field": path, "op": "ne", "value": value}), ctx)
    assert ne is (not eq)


@given(st.sampled_from(PATHS), SCALARS, contexts())
def test_in_singleton_is_eq(path: str, value: Any, ctx: dict[str, Any]) -> None:
    eq = evaluate(cond({"field": path, "op": "eq", "value": value}), ctx)
    assert evaluate(cond({"field": path, "op": "in", "value": [value]}), ctx) is eq
    ne = evaluate(cond({"field": path, "op": "ne", "value": value}), ctx)
    assert evaluate(cond({"field": path, "op": "not_in", "value": [value]}), ctx) is ne


@given(st.sampled_from(PATHS), contexts())
def test_exists_false_is_absence(path: str, ctx: dict[str, Any]) -> None:
    present = evaluate(cond({"field": path, "op": "exists"}), ctx)
    assert present is lookup(ctx, path)[0]
    assert evaluate(cond({"field": path, "op": "exists", "value": False}), ctx) is (not present)


AWARE = ISO.map(lambda d: d if d.tzinfo is not None else d.replace(tzinfo=UTC))


@given(AWARE, AWARE)
def test_iso_order_is_instant_order(left: datetime, right: datetime) -> None:
    ctx = context({"x": left.isoformat()})
    for op, expected in [
        ("eq", left == right),
        ("gt", left > right),
        ("gte", left >= right),
        ("lt", left < right),
        ("lte", left <= right),
    ]:
        where = cond({"field": PATH, "op": op, "value": right.isoformat()})
        assert evaluate(where, ctx) is expected, op
