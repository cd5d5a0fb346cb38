"""JSON request bodies read strictly: what `json.loads` lets through but no store can keep.

Python's parser accepts `NaN`, `Infinity`, numbers that overflow to infinity, repeated
keys (the last one wins silently), lone UTF-16 surrogates (`"\\ud800"`, which cannot be
encoded again) and NUL characters (which PostgreSQL text cannot hold), and it nests as
deep as the interpreter's stack allows. `loads` refuses all of these, naming where in
the body the problem is. Pure: no I/O.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from runner.errors import PostwrightError

MAX_DEPTH = 64
_PARSER_LEVELS = 2_000
# A lone surrogate can only arrive escaped (`\ud800`) once the body is strict UTF-8, and
# so can NUL (a raw control character inside a JSON string is a syntax error).
_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")


class JsonRefused(PostwrightError, ValueError):
    """A body that is not acceptable JSON; `field` says where (`(body)` for the whole). Also a
    ValueError, as the parser's own errors are."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Repeated(dict[str, Any]):
    """An object that named `key` twice."""

    key: str


class _NonFinite:
    """`NaN`, `Infinity` or `-Infinity` as written in the body."""

    def __init__(self, text: str) -> None:
        self.text = text


class _Hooks:
    """The parser's hooks for one body; `suspicious` once any of them met a problem."""

    def __init__(self) -> None:
        self.suspicious = False

    def pairs(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        value = dict(items)
        if len(value) == len(items):
            return value
        self.suspicious = True
        repeated = _Repeated(value)
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                repeated.key = key
                break
            seen.add(key)
        return repeated

    def constant(self, name: str) -> _NonFinite:
        self.suspicious = True
        return _NonFinite(name)

    def number(self, text: str) -> float:
        value = float(text)
        if math.isinf(value):
            self.suspicious = True
        return value


class _Suspicious(Exception):
    """Raised by the fast parser's hooks at the first thing the marking parse must see."""


def _plain_pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(items)
    if len(value) != len(items):
        raise _Suspicious
    return value


def _plain_constant(name: str) -> Any:
    raise _Suspicious


def _plain_number(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Suspicious
    return value


# Built once (json.loads with hooks builds a decoder and its scanner per call) and without
# state, so threads may share it: a body with nothing suspicious, nearly every body, is
# parsed once; any other is parsed again by the marking parser below, which names the place.
_PLAIN = json.JSONDecoder(
    object_pairs_hook=_plain_pairs, parse_constant=_plain_constant, parse_float=_plain_number
)


def loads(raw: bytes) -> Any:
    """The JSON value of `raw`, refusing anything a later step could not store or encode."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JsonRefused("(body)", f"not UTF-8 (byte {error.start})") from None
    hooks = _Hooks()
    containers = text.count("{") + text.count("[")
    try:
        with _parser_depth(containers):
            try:
                if text.startswith("\ufeff"):  # json.loads refuses a BOM; the decoder does not
                    raise _Suspicious
                value = _PLAIN.decode(text)
            except _Suspicious:
                value = json.loads(
                    text,
                    object_pairs_hook=hooks.pairs,
                    parse_constant=hooks.constant,
                    parse_float=hooks.number,
                )
    except RecursionError:
        raise JsonRefused("(body)", f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise JsonRefused("(body)", str(error)) from None
    # The full walk costs a pass in Python: only when something may be wrong.
    check_text = "\\u" in text
    if hooks.suspicious or check_text:
        _check(value, check_text=check_text)
    elif containers > MAX_DEPTH and not _shallow(value, 0):
        _check(value, check_text=False)
    return value


@contextlib.contextmanager
def _parser_depth(containers: int) -> Iterator[None]:
    """Room for the parser to nest about `_PARSER_LEVELS` deeper than the usual limit.

    Python's parser recurses per level against the interpreter's recursion limit, so a
    body nested about a thousand deep fails as a RecursionError, or parses and then
    breaks whatever recurses over it next. With this headroom such a body parses and is
    refused naming its deepest field; deeper ones fail in the parser, bounded.
    """
    if containers <= MAX_DEPTH:
        yield
        return
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + _PARSER_LEVELS)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _shallow(item: Any, depth: int) -> bool:
    """Whether no container nests MAX_DEPTH levels below `item` (the fast common case)."""
    if depth >= MAX_DEPTH:
        return False
    for child in item.values() if type(item) is dict else item:
        kind = type(child)
        if (kind is dict or kind is list) and not _shallow(child, depth + 1):
            return False
    return True


def _check(value: Any, *, check_text: bool) -> None:
    """Raise JsonRefused at the first unacceptable place of `value`, depth first."""
    # (value, its place as a linked (parent, key) pair made text only on refusal, depth)
    stack: list[tuple[Any, Any, int]] = [(value, None, 0)]
    while stack:
        item, place, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise JsonRefused(_field(place), f"nested deeper than {MAX_DEPTH} levels")
            stack.extend((child, (place, key), depth + 1) for key, child in _children(item))
        if isinstance(item, _Repeated):
            where = _field((place, item.key))
            raise JsonRefused(where, "the key appears more than once in this object")
        if check_text and isinstance(item, dict):
            for key in item:
                if _UNSAFE_TEXT.search(key):
                    raise JsonRefused(_field((place, key)), _unsafe(key, "key"))
        _check_scalar(item, place, check_text)


def _children(item: dict[str, Any] | list[Any]) -> Iterable[tuple[str | int, Any]]:
    return item.items() if isinstance(item, dict) else enumerate(item)


def _check_scalar(item: Any, place: Any, check_text: bool) -> None:
    if isinstance(item, str):
        if check_text and _UNSAFE_TEXT.search(item):
            raise JsonRefused(_field(place), _unsafe(item, "text"))
    elif isinstance(item, _NonFinite):
        raise JsonRefused(_field(place), f"{item.text} is not a JSON number")
    elif isinstance(item, float) and not math.isfinite(item):
        raise JsonRefused(_field(place), "number out of range (it overflows to infinity)")


def _unsafe(text: str, what: str) -> str:
    if "\x00" in text:
        return f"the {what} contains a NUL character (\\u0000)"
    return f"the {what} contains a lone UTF-16 surrogate (not a character)"


def _field(place: Any) -> str:
    """`events[3].data.name` from a linked place."""
    parts: list[str | int] = []
    while place is not None:
        place, key = place
        parts.append(key)
    text = ""
    for part in reversed(parts):
        text += (
            f"[{part}]" if isinstance(part, int) else (f".{_shown(part)}" if text else _shown(part))
        )
    return text or "(body)"


def _shown(key: str) -> str:
    """A key safe to put in an answer: surrogates and control characters escaped."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")
