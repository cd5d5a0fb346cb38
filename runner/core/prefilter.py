"""What a store may test in SQL before an audience is evaluated (pure): the parts of an
`audience` every matching subscriber satisfies, in a form each store can spell.

A prefilter only narrows the rows read: the audience is still evaluated on every row found,
so a prefilter may let through more than matches (a string that equals a number's text) but
never less. Only exact string comparisons and group membership qualify; instants compare by
value and numbers by type, which SQL would not reproduce.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.core.conditions import (
    AllCondition,
    Condition,
    FieldCondition,
    GroupCondition,
    Op,
    is_instant,
)

_FIELDS = "subscriber.fields."
# Keys a store can name in a JSON path without quoting.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class FieldIn:
    """The subscriber field at `path` (keys below `fields`) is a string among `values`."""

    path: tuple[str, ...]
    values: tuple[str, ...]


@dataclass(frozen=True)
class InGroup:
    """The subscriber belongs to group `name`."""

    name: str


Prefilter = FieldIn | InGroup


def prefilters(audience: Condition | None) -> tuple[Prefilter, ...]:
    """Tests every subscriber matching `audience` passes (none: every subscriber is read)."""
    if isinstance(audience, AllCondition):
        return tuple(found for part in audience.all for found in prefilters(part))
    if isinstance(audience, GroupCondition):
        return (InGroup(audience.in_group),)
    if isinstance(audience, FieldCondition):
        found = _field_in(audience)
        return () if found is None else (found,)
    return ()


def _field_in(condition: FieldCondition) -> FieldIn | None:
    if not condition.field.startswith(_FIELDS):
        return None
    path = tuple(condition.field.removeprefix(_FIELDS).split("."))
    if not all(_KEY.fullmatch(key) for key in path):
        return None
    if condition.op is Op.EQ:
        values = [condition.value]
    elif condition.op is Op.IN and isinstance(condition.value, list):
        values = list(condition.value)
    else:
        return None
    if not values or not all(isinstance(v, str) and not is_instant(v) for v in values):
        return None
    texts = tuple(str(v) for v in values)
    if any("\x00" in text for text in texts):  # a store's JSON reading may cut text at a NUL
        return None
    return FieldIn(path, texts)


def decided(audience: Condition | None, exact_fields: bool) -> bool:
    """Whether the `prefilters` of `audience` decide it on their own, so a row they pass
    needs no audience check: group membership always; a field's strings only where the
    store's field test is `exact_fields` (true for the string's value at that path, false
    for any other value) and no string could be the JSON text of a list or object (which a
    store may compare as text)."""
    if audience is None or isinstance(audience, GroupCondition):
        return True
    if isinstance(audience, AllCondition):
        return all(decided(part, exact_fields) for part in audience.all)
    if not exact_fields or not isinstance(audience, FieldCondition):
        return False
    found = _field_in(audience)
    return found is not None and not any(v.startswith(("[", "{")) for v in found.values)
