"""Which parts of an audience a store may test in SQL before evaluating it (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from runner.core.conditions import Condition
from runner.core.prefilter import FieldIn, InGroup, prefilters

CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)


def sql_tests(audience: dict[str, Any]) -> tuple[object, ...]:
    return prefilters(CONDITION.validate_python(audience))


def field(path: str, op: str, value: Any) -> dict[str, Any]:
    return {"field": path, "op": op, "value": value}


def test_no_audience_reads_every_subscriber() -> None:
    assert prefilters(None) == ()


def test_a_string_equality_or_list_is_tested() -> None:
    assert sql_tests(field("subscriber.fields.plan", "eq", "pro")) == (
        FieldIn(("plan",), ("pro",)),
    )
    found = sql_tests(field("subscriber.fields.a.b", "in", ["x", "y"]))
    assert found == (FieldIn(("a", "b"), ("x", "y")),)


def test_a_group_is_tested() -> None:
    assert sql_tests({"in_group": "vip"}) == (InGroup("vip"),)


def test_every_part_of_all_is_collected() -> None:
    audience = {"all": [{"in_group": "vip"}, field("subscriber.fields.plan", "eq", "pro")]}
    assert sql_tests(audience) == (InGroup("vip"), FieldIn(("plan",), ("pro",)))
    nested = {"all": [{"all": [{"in_group": "a"}]}, field("subscriber.fields.n", "gt", 1)]}
    assert sql_tests(nested) == (InGroup("a"),)


@pytest.mark.parametrize(
    "audience",
    [
        field("subscriber.fields.n", "eq", 5),  # numbers compare by type in Python
        field("subscriber.fields.ok", "eq", True),
        field("subscriber.fields.since", "eq", "2026-01-01"),  # instants compare by value
        field("subscriber.fields.plan", "in", ["pro", 5]),
        field("subscriber.fields.plan", "ne", "pro"),
        field("subscriber.fields.plan", "starts_with", "p"),
        field("subscriber.email", "eq", "a@x.io"),
        field("event.data.plan", "eq", "pro"),
        {"any": [{"in_group": "a"}, {"in_group": "b"}]},
        {"not": {"in_group": "a"}},
    ],
)
def test_what_sql_would_not_reproduce_is_left_to_python(audience: dict[str, Any]) -> None:
    assert sql_tests(audience) == ()
