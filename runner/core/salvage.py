"""What can still be checked in an invalid automation file (pure).

An invalid file has no model, yet most of it is usually fine: its id, its
templates, its references to other files, the rules between its other keys.
`salvage` drops every value a finding was about (and, when that leaves a
required key empty, its section, or a neutral stand-in for a required
top-level key) until the rest validates. The result is a model of the parts
that parsed and the set of key paths that were dropped or stood in for:
checks that read a dropped path must not run, or they would report a problem
an earlier finding already explains.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from runner.core.locations import Path, error_path
from runner.core.model import COLLECT_VIOLATIONS, Automation, Violation

# Each round drops at least one value; a file needs as many rounds as the depth of
# its deepest required key below a bad value, far fewer than this.
MAX_ROUNDS = 12
# A file with more bad values than this is not salvaged: its own findings are many
# enough, and a hostile file must not cost a second validation per value.
MAX_BAD = 500

# Stand-ins for required keys that hold the file together; none of them is
# ever reported (the paths are in `dropped`) and none breaks a rule.
_STAND_INS: dict[Path, Any] = {
    ("id",): "invalid-id",
    ("status",): "draft",
    ("trigger",): {"type": "api"},
    ("email",): {"from": "---", "subject": "-", "text": "-"},
    ("email", "from"): "---",
    ("email", "subject"): "-",
}


def related(one: Path, other: Path) -> bool:
    """Whether one path is the other or lies inside it (either way round)."""
    shorter = min(len(one), len(other))
    return one[:shorter] == other[:shorter]


def touches(path: Path, dropped: Iterable[Path]) -> bool:
    """Whether `path` reads a value that was dropped (or stood in for)."""
    return any(related(path, gone) for gone in dropped)


def trusted(violation: Violation, dropped: frozenset[Path]) -> bool:
    """Whether a violation found on a salvaged model reads only kept values."""
    return not any(touches(used, dropped) for used in violation.uses)


class _Pruner:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.dropped: set[Path] = set()
        self.stood_in: set[Path] = set()

    def prune(self, path: Path) -> bool:
        """Drop the value at `path` (or the nearest thing that can go); False when nothing can."""
        path = self._above_lists(path)
        if any(path[:end] in self.dropped for end in range(1, len(path))):
            return False  # a section around it is gone already
        while path:
            parent, key = self._get(path[:-1]), path[-1]
            stand_in = _STAND_INS.get(path)
            if stand_in is not None and path not in self.stood_in and isinstance(parent, dict):
                parent[key] = _copy(stand_in)
                self.stood_in.add(path)
                self.dropped.add(path)
                return True
            if isinstance(parent, dict) and key in parent and path not in self.stood_in:
                del parent[key]
                self.dropped.add(path)
                return True
            path = path[:-1]  # missing already: its section has to go
        return False

    def forget(self, path: Path) -> bool:
        """Remove an unknown key; no rule reads it, so it is not counted as dropped."""
        parent = self._get(path[:-1])
        if path and isinstance(parent, dict) and path[-1] in parent:
            del parent[path[-1]]
            return True
        return False

    def _get(self, path: Path) -> Any:
        current: Any = self.data
        for part in path:
            if isinstance(current, dict) and part in current:
                current = current[part]
            else:
                return None
        return current

    def _above_lists(self, path: Path) -> Path:
        """Cut a path at its first list: dropping one item would renumber the others."""
        current: Any = self.data
        for index, part in enumerate(path):
            if isinstance(current, list):
                return path[:index]
            current = current.get(part) if isinstance(current, dict) else None
        return path


def salvage(
    data: Any, bad: Iterable[Path], unknown: Iterable[Path] = ()
) -> tuple[Automation | None, frozenset[Path]]:
    """A model of what remains valid once the `bad` paths are dropped, and what was dropped.

    `unknown` keys are removed too but not counted as dropped: no rule reads
    them. None when nothing usable remains (the file is not a mapping) or the
    file has more than MAX_BAD problems.
    """
    paths, extra = set(bad), list(unknown)
    if not isinstance(data, dict) or len(paths) + len(extra) > MAX_BAD:
        return None, frozenset(paths)
    pruner = _Pruner(_copy(data))
    for path in extra:
        pruner.forget(path)
    for path in sorted(paths, key=len, reverse=True):
        pruner.prune(path)
    for _ in range(MAX_ROUNDS):
        try:
            model = Automation.model_validate(pruner.data, context={COLLECT_VIOLATIONS: True})
        except ValidationError as error:
            progress = False
            for detail in error.errors(include_url=False):
                path = error_path(pruner.data, detail)
                if detail["type"] == "extra_forbidden":
                    progress = pruner.forget(path) or progress
                else:
                    progress = pruner.prune(path) or progress
            if not progress:
                break
            continue
        return model, frozenset(pruner.dropped)
    return None, frozenset(pruner.dropped | paths)


def _copy(value: Any) -> Any:
    """A copy of plain YAML data (mappings, lists, scalars), several times faster than deepcopy."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
