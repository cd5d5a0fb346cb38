"""Where a pydantic validation error lies in the file as written (pure).

pydantic's `loc` names union tags and member names (`email`, `Cooldown`) that
the file never wrote; the loader reports, and the salvage drops, key paths of
the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails

Path = tuple[str | int, ...]

_CONDITION_TAGS = ("field", "in_group", "all", "any", "not")


def _union_tag(value: Mapping[Any, Any]) -> str | None:
    """The tag pydantic writes into `loc` after a discriminated union holding `value`."""
    kind = value.get("type")
    if isinstance(kind, str):
        return kind
    return next((key for key in _CONDITION_TAGS if key in value), None)


def written_path(data: Any, loc: Sequence[int | str]) -> Path:
    """The part of pydantic's `loc` that names keys written in the file.

    pydantic inserts union tags and member names (`email`, `Cooldown`) into
    locations; they are skipped unless the data really has such a key. A tag
    comes right after the union's own location, so when the next part equals
    the tag of the mapping found there, it is the tag even if the mapping also
    has a key of that name (`{field: ..., op: ...}`, `{type: event, event: ...}`).
    """
    current: Any = data
    written: list[str | int] = []
    tag_checked = False
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, Mapping) and not tag_checked:
            tag_checked = True
            if not last and part == _union_tag(current):
                continue
        if isinstance(current, Mapping) and part in current:
            current = current[part]
            written.append(part)
            tag_checked = False
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            written.append(part)
            tag_checked = False
        elif last and isinstance(current, Mapping) and isinstance(part, str):
            written.append(part)  # a missing key names itself
    return tuple(written)


def error_path(data: Any, detail: ErrorDetails) -> Path:
    """The key path one validation error is about."""
    where = written_path(data, detail["loc"])
    context = detail.get("ctx") or {}
    if detail["type"] == "union_tag_invalid":
        where = (*where, str(context.get("discriminator", "'type'")).strip("'"))
    if isinstance(context.get("at"), str) and context["at"]:
        where = (*where, *context["at"].split("."))
    return where
