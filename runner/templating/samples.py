"""Sample data for a template: the subscriber fields and event data keys it reads, each with
a plausible value, so `postwright preview` can render an email nobody described; pure.

Only the parse tree is read (as in analysis.py). A key iterated by a `for` loop becomes a
list of two items holding the keys the loop body reads from its variable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from runner.templating.sandbox import environment

_METHODS = frozenset({"get", "items", "keys", "values"})
_PARSER = environment(html=False)  # parsing does not depend on autoescape
SCOPES = {("subscriber", "fields"): "fields", ("event", "data"): "data"}


@dataclass
class Reads:
    """Per scope ("fields", "data"): key -> None (a value) or the item keys of a list."""

    fields: dict[str, set[str] | None] = field(default_factory=dict)
    data: dict[str, set[str] | None] = field(default_factory=dict)

    def add(self, scope: str, key: str, items: set[str] | None = None) -> None:
        target = self.fields if scope == "fields" else self.data
        known = target.get(key)
        if items is not None:
            target[key] = (known or set()) | items
        else:
            target.setdefault(key, None)


def template_reads(texts: Iterable[str | None]) -> Reads:
    """What `texts` read of `subscriber.fields` and `event.data` (unparsable texts skipped)."""
    reads = Reads()
    for text in texts:
        if not text:
            continue
        try:
            tree = _PARSER.parse(text)
        except TemplateSyntaxError:
            continue
        loops = _loops(tree, reads)
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            path = _path(node)
            if path is None:
                continue
            if path[0] in loops and len(path) >= 2:
                scope, key = loops[path[0]]
                reads.add(scope, key, {path[1]})
                continue
            found = _scoped(node)
            if found is not None and found not in loops.values() and found[1] not in _METHODS:
                reads.add(*found)
        for call in tree.find_all(nodes.Call):  # `event.data.get('key')`
            called = _path(call.node)
            where = SCOPES.get((called[0], called[1])) if called and len(called) == 3 else None
            if where and called and called[2] == "get" and call.args:
                first = call.args[0]
                if isinstance(first, nodes.Const) and isinstance(first.value, str):
                    reads.add(where, first.value)
    return reads


def _loops(tree: nodes.Template, reads: Reads) -> dict[str, tuple[str, str]]:
    """Loop variable -> the (scope, key) it walks, each key recorded as a list."""
    loops: dict[str, tuple[str, str]] = {}
    for loop in tree.find_all(nodes.For):
        walked = _scoped(_unfiltered(loop.iter))
        if walked is not None and isinstance(loop.target, nodes.Name):
            loops[loop.target.name] = walked
            reads.add(*walked, set())
    return loops


def _unfiltered(node: nodes.Node) -> nodes.Node:
    while isinstance(node, nodes.Filter) and node.node is not None:
        node = node.node
    return node


def _path(node: nodes.Node) -> list[str] | None:
    """`a.b['c']` as ["a", "b", "c"]; None for anything else."""
    keys: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            keys.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            return [node.name, *reversed(keys)]
        else:
            return None


def _scoped(node: nodes.Node) -> tuple[str, str] | None:
    path = _path(node)
    if path is None or len(path) < 3:
        return None
    scope = SCOPES.get((path[0], path[1]))
    return None if scope is None else (scope, path[2])


def sample_values(reads: dict[str, set[str] | None]) -> dict[str, Any]:
    """A plausible value for every key read (a list of two items for iterated keys)."""
    values: dict[str, Any] = {}
    for key, items in sorted(reads.items()):
        if items is None:
            values[key] = sample_value(key)
        else:
            values[key] = [
                {item: sample_value(item, index) for item in sorted(items)} for index in (1, 2)
            ]
    return values


_BY_NAME: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("first_name", "firstname", "given_name"), "Alex"),
    (("last_name", "lastname", "family_name", "surname"), "Morgan"),
    (("email",), "alex@example.test"),
    (("timezone", "time_zone", "tz"), "UTC"),
    (("birthday", "birth_date", "date"), "1990-06-15"),
    (("url", "link", "href"), "https://shop.example.test/"),
    (("quantity", "qty", "count"), 2),
    (("total", "price", "amount", "subtotal", "cost"), "42.00"),
    (("code", "coupon"), "WELCOME10"),
    (("number", "_id", "id"), "1042"),
    (("name", "title", "product"), "Sample item"),
    (("plan", "grade", "tier", "level"), "pro"),
    (("city",), "Lisbon"),
    (("country",), "PT"),
)


def sample_value(key: str, index: int = 1) -> Any:
    """A value that reads naturally for a key of that name (`first_name` -> "Alex")."""
    lowered = key.lower()
    for names, value in _BY_NAME:
        if any(lowered == name or lowered.endswith(name) for name in names):
            if value == "Sample item" and index > 1:
                return f"Sample item {index}"
            return value
    return f"sample {key}"
