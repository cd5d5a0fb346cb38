"""strict_json.loads: the one-pass parse of ordinary bodies, and refusals naming the place."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.server.strict_json import JsonRefused, loads

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@given(_VALUES, st.booleans())
def test_ordinary_bodies_parse_like_json(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert loads(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b'\xef\xbb\xbf{"a": 1}', "(body)", "BOM"),
        (b'{"a": 1, "b": {"c": 1, "c": 2}}', "b.c", "more than once"),
        (b'{"a": [1, NaN]}', "a[1]", "NaN"),
        (b'{"a": {"b": -Infinity}}', "a.b", "Infinity"),
        (b'{"a": 1e999}', "a", "overflows"),
        (b'{"a": "x\\u0000"}', "a", "NUL"),
        (b'{"a": "\\ud800"}', "a", "surrogate"),
        (b'{"a": 1', "(body)", "Expecting"),
    ],
)
def test_refusals_name_the_place(raw: bytes, field: str, message: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        loads(raw)
    assert refused.value.field == field
    assert message in refused.value.message


def test_a_repeated_key_after_a_good_object_is_still_found() -> None:
    # the fast parse stops at the first problem; the marking parse finds it again
    raw = b'[{"a": 1}, {"b": 1.5, "b": 2}]'
    with pytest.raises(JsonRefused) as refused:
        loads(raw)
    assert refused.value.field == "[1].b"
