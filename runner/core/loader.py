"""The only door from a file to a model: bytes -> YAML with positions -> pydantic.

Every problem comes back as a finding at the file, line and column of the
value or key it concerns; nothing here raises on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from runner.core import findings
from runner.core.config import Config
from runner.core.findings import Finding
from runner.core.locations import Path, error_path
from runner.core.model import COLLECT_VIOLATIONS, Automation, constraint_violations
from runner.core.rules import RULES
from runner.core.salvage import salvage, touches, trusted
from runner.core.yamlread import Document, read_yaml

M = TypeVar("M", bound=BaseModel)

# pydantic error types with a rule of their own; every other type is `schema`.
_RULE_OF_TYPE = {"timezone_aware": "datetime-offset"}
_SECRET_KEY_HINTS = ("token", "secret", "password", "api_key", "key")


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A file read through the loader: the model when valid, and every finding.

    An invalid automation file may still carry `partial`, a model of the parts
    that parsed (see salvage.py), and `dropped`, the key paths left out of it:
    checks of other parts still run on it, and never produce a version.
    """

    path: str
    model: M | None
    findings: tuple[Finding, ...]
    document: Document | None
    partial: M | None = None
    dropped: frozenset[Path] = frozenset()

    def position(self, *path: str | int, key: bool = False) -> tuple[int, int]:
        """Line and column of `path` in the file (1, 1 when unknown)."""
        if self.document is None:
            return (1, 1)
        return self.document.position(tuple(path), key=key)

    def readable(self, *path: str | int) -> bool:
        """Whether `path` holds a value the checks may read (not dropped as invalid)."""
        return not self.dropped or not touches(tuple(path), self.dropped)


def load_automation(path: str, content: bytes) -> Loaded[Automation]:
    """Read one automation file; the model is None when any error was found.

    Every finding that can be found in one pass is reported: a YAML 1.1 boolean
    word, every schema error, and the rules between keys that did parse.
    """
    document, found = read_yaml(path, content)
    if document is None:
        return Loaded(path, None, tuple(found), document)
    suspect = frozenset(document.booleans)
    try:
        model = Automation.model_validate(document.data, context={COLLECT_VIOLATIONS: True})
        bad: list[Path] = []
        unknown: list[Path] = []
    except ValidationError as error:
        model = None
        located = _validation_findings(path, document, error, skip=suspect)
        found.extend(finding for finding, _, _ in located)
        bad = [where for _, where, extra in located if not extra]
        unknown = [where for _, where, extra in located if extra]
    if model is None or suspect:
        partial, dropped = salvage(document.data, [*bad, *suspect], unknown)
    else:
        partial, dropped = model, frozenset()
    if partial is not None:
        ident = partial.id if not touches(("id",), dropped) else None
        found.extend(
            findings.make(v.rule, path, v.message, *document.position(v.at), automation=ident)
            for v in constraint_violations(partial)
            if trusted(v, dropped)
        )
    if found:
        return Loaded(path, None, tuple(found), document, partial, dropped)
    return Loaded(path, model, (), document)


def load_config(path: str, content: bytes) -> Loaded[Config]:
    """Read `postwright.yaml`; an empty file is the default configuration."""
    document, found = read_yaml(path, content)
    if document is None:
        return Loaded(path, None, tuple(found), document)
    data = {} if document.data is None else document.data
    try:
        model = Config.model_validate(data)
    except ValidationError as error:
        located = _validation_findings(path, document, error, skip=frozenset(document.booleans))
        found.extend(finding for finding, _, _ in located)
        return Loaded(path, None, tuple(found), document)
    if found:
        return Loaded(path, None, tuple(found), document)
    return Loaded(path, model, (), document)


def _validation_findings(
    path: str, document: Document, error: ValidationError, *, skip: frozenset[Path]
) -> list[tuple[Finding, Path, bool]]:
    """Each error once per place, with its key path and whether it is an unknown key.

    Errors inside a `skip` path are left out: a finding there already explains them.
    """
    result: list[tuple[Finding, Path, bool]] = []
    seen: set[Path] = set()
    for detail in error.errors(include_url=False):
        where = error_path(document.data, detail)
        if where in seen or touches_inside(where, skip):
            continue  # one finding per place: union members repeat the same mistake
        seen.add(where)
        kind = detail["type"]
        rule = kind if kind in RULES else _RULE_OF_TYPE.get(kind, "schema")
        message = _message(kind, where, detail["msg"])
        if kind == "extra_forbidden" and _looks_secret(where):
            rule = "literal-secret"
            message = (
                f"`{_dotted(where)}` looks like a secret; "
                f"name an environment variable with `{where[-1]}_env` instead"
            )
        line, col = document.position(where, key=kind == "extra_forbidden")
        finding = findings.make(rule, path, message, line, col)
        result.append((finding, where, kind == "extra_forbidden"))
    return result


def touches_inside(where: Path, skip: frozenset[Path]) -> bool:
    """Whether `where` is one of the `skip` paths or lies inside one."""
    return any(where[: len(gone)] == gone for gone in skip)


def _dotted(where: Path) -> str:
    return ".".join(str(part) for part in where) or "(top level)"


def _message(kind: str, where: Path, text: str) -> str:
    if kind == "extra_forbidden":
        return f"unknown key `{_dotted(where)}`"
    if kind == "missing":
        return f"missing required key `{_dotted(where)}`"
    return f"`{_dotted(where)}`: {text}"


def _looks_secret(where: Path) -> bool:
    key = str(where[-1]).lower() if where else ""
    return not key.endswith("_env") and any(hint in key for hint in _SECRET_KEY_HINTS)
