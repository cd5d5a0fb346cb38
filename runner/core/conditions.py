"""Conditions: their grammar (the pydantic models of `audience`, `where` and `exit_on[].where`)
and their evaluation against a subscriber and an event; pure and fast (docs/file-format.md).

The context is `{"subscriber": {"email", "fields", "groups"}, "event": {"name", "data",
"occurred_at"}}`. Values of different types never match; ISO-8601 strings compare as instants.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from runner.core.fields import FieldPath, Scalar, StrictModel

__all__ = [
    "AllCondition",
    "AnyCondition",
    "Condition",
    "FieldCondition",
    "GroupCondition",
    "NotCondition",
    "Op",
    "evaluate",
    "is_instant",
    "lookup",
]

# Only the extended form (YYYY-MM-DD, optionally followed by a time) counts as a date-time, so
# that digit strings such as postcodes or "20260101" are never read as instants.
_ISO_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d|$)")

_MISSING: tuple[bool, Any] = (False, None)


# --- the grammar: what a condition may say -------------------------------------------


class Op(StrEnum):
    """Comparison operators of a field condition."""

    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"


class FieldCondition(StrictModel):
    """`{field, op, value}`: compare one field of the subscriber or event."""

    field: FieldPath
    op: Op
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> FieldCondition:
        has_value = "value" in self.model_fields_set
        if self.op is Op.EXISTS:
            if has_value and not isinstance(self.value, bool):
                raise PydanticCustomError("schema", "`exists` takes no value, or true/false")
        elif not has_value or self.value is None:
            raise PydanticCustomError("schema", "`{op}` needs a `value`", {"op": self.op.value})
        elif self.op in (Op.IN, Op.NOT_IN) and not isinstance(self.value, list):
            raise PydanticCustomError("schema", "`{op}` needs a list value", {"op": self.op.value})
        return self


class GroupCondition(StrictModel):
    """`{in_group: name}`: the subscriber belongs to the group."""

    in_group: Annotated[str, Field(min_length=1, max_length=200)]


class AllCondition(StrictModel):
    """`{all: [...]}`: every condition holds."""

    all: Annotated[list[Condition], Field(min_length=1)]


class AnyCondition(StrictModel):
    """`{any: [...]}`: at least one condition holds."""

    any: Annotated[list[Condition], Field(min_length=1)]


class NotCondition(StrictModel):
    """`{not: cond}`: the condition does not hold."""

    not_: Condition = Field(alias="not")


_CONDITION_KEYS = ("field", "in_group", "all", "any", "not")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((key for key in _CONDITION_KEYS if key in value), None)
    kinds: dict[type, str] = {
        FieldCondition: "field",
        GroupCondition: "in_group",
        AllCondition: "all",
        AnyCondition: "any",
        NotCondition: "not",
    }
    return kinds.get(type(value))


Condition = Annotated[
    Annotated[FieldCondition, Tag("field")]
    | Annotated[GroupCondition, Tag("in_group")]
    | Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="schema",
        custom_error_message="a condition has one of: field, in_group, all, any, not",
    ),
]

for _model in (AllCondition, AnyCondition, NotCondition):
    _model.model_rebuild()


# --- evaluation -----------------------------------------------------------------------


def evaluate(condition: Condition, context: Mapping[str, Any]) -> bool:
    """Whether `condition` holds for `context` (subscriber after the update, and the event)."""
    return _EVALUATORS[type(condition)](condition, context)


def lookup(context: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """`(found, value)` for a dotted path of mapping keys; a path through a list is missing."""
    current: Any = context
    for key in _parts(path):
        if not isinstance(current, Mapping) or key not in current:
            return _MISSING
        current = current[key]
    return True, current


@lru_cache(maxsize=1024)
def _parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


@lru_cache(maxsize=8192)
def _instant(text: str) -> datetime | None:
    """The UTC instant an ISO-8601 string names, or None (naive and date-only are UTC)."""
    if _ISO_PREFIX.match(text) is None:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed


def is_instant(text: str) -> bool:
    """Whether conditions compare `text` as an instant (an ISO-8601 date or date-time)."""
    return _instant(text) is not None


def _kind(value: Any) -> str:
    # bool is checked before int: True is a boolean, never the number 1.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _equal(actual: Any, expected: Any) -> bool:
    kind = _kind(actual)
    if kind != _kind(expected):
        return False
    if kind == "string":
        if actual == expected:
            return True
        left, right = _instant(actual), _instant(expected)
        return left is not None and right is not None and left == right
    if kind == "list":
        return len(actual) == len(expected) and all(map(_equal, actual, expected))
    return bool(actual == expected)


def _not_equal(actual: Any, expected: Any) -> bool:
    return not _equal(actual, expected)


def _one_of(actual: Any, expected: Any) -> bool:
    return any(_equal(actual, item) for item in expected)


def _none_of(actual: Any, expected: Any) -> bool:
    return not _one_of(actual, expected)


def _contains(actual: Any, expected: Any) -> bool:
    kind = _kind(actual)
    if kind == "string":
        return isinstance(expected, str) and expected in actual
    if kind == "list":
        return any(_equal(item, expected) for item in actual)
    return False


def _starts_with(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def check(actual: Any, expected: Any) -> bool:
        kind = _kind(actual)
        if kind != _kind(expected):
            return False
        if kind == "number":
            return compare(actual, expected)
        if kind == "string":
            left, right = _instant(actual), _instant(expected)
            if left is not None and right is not None:
                return compare(left, right)
            return compare(actual, expected)
        return False

    return check


_OPS: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: _equal,
    Op.NE: _not_equal,
    Op.IN: _one_of,
    Op.NOT_IN: _none_of,
    Op.CONTAINS: _contains,
    Op.STARTS_WITH: _starts_with,
    Op.GT: _ordered(operator.gt),
    Op.GTE: _ordered(operator.ge),
    Op.LT: _ordered(operator.lt),
    Op.LTE: _ordered(operator.le),
}
# A missing field is "not equal" to anything and "not in" any list; every other op is false.
_TRUE_WHEN_MISSING = frozenset({Op.NE, Op.NOT_IN})


def _field(condition: FieldCondition, context: Mapping[str, Any]) -> bool:
    found, value = lookup(context, condition.field)
    if condition.op is Op.EXISTS:
        return found is (condition.value is not False)
    if not found:
        return condition.op in _TRUE_WHEN_MISSING
    return _OPS[condition.op](value, condition.value)


def _group(condition: GroupCondition, context: Mapping[str, Any]) -> bool:
    found, groups = lookup(context, "subscriber.groups")
    if not found or not isinstance(groups, list | tuple | set | frozenset):
        return False
    return condition.in_group in groups


def _all(condition: AllCondition, context: Mapping[str, Any]) -> bool:
    return all(evaluate(item, context) for item in condition.all)


def _any(condition: AnyCondition, context: Mapping[str, Any]) -> bool:
    return any(evaluate(item, context) for item in condition.any)


def _not(condition: NotCondition, context: Mapping[str, Any]) -> bool:
    return not evaluate(condition.not_, context)


_EVALUATORS: dict[type, Callable[[Any, Mapping[str, Any]], bool]] = {
    FieldCondition: _field,
    GroupCondition: _group,
    AllCondition: _all,
    AnyCondition: _any,
    NotCondition: _not,
}
