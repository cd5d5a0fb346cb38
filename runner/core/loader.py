"""The only door from a file to a model: bytes -> YAML with positions -> pydantic.

Every problem comes back as a finding at the file, line and column of the
value or key it concerns; nothing here raises on bad input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from runner.core import findings
from runner.core.config import Config
from runner.core.findings import Finding
from runner.core.model import COLLECT_VIOLATIONS, Automation, constraint_violations
from runner.core.rules import RULES
from runner.core.yamlread import Document, Path, read_yaml

M = TypeVar("M", bound=BaseModel)

# pydantic error types with a rule of their own; every other type is `schema`.
_RULE_OF_TYPE = {"timezone_aware": "datetime-offset"}
_SECRET_KEY_HINTS = ("token", "secret", "password", "api_key", "key")


@dataclass(frozen=True)
class Loaded(Generic[M]):
    """A file read through the loader: the model when valid, and every finding."""

    path: str
    model: M | None
    findings: tuple[Finding, ...]
    document: Document | None

    def position(self, *path: str | int, key: bool = False) -> tuple[int, int]:
        """Line and column of `path` in the file (1, 1 when unknown)."""
        if self.document is None:
            return (1, 1)
        return self.document.position(tuple(path), key=key)


def load_automation(path: str, content: bytes) -> Loaded[Automation]:
    """Read one automation file; the model is None when any error was found."""
    document, found = read_yaml(path, content)
    if document is None or found:
        return Loaded(path, None, tuple(found), document)
    try:
        model = Automation.model_validate(document.data, context={COLLECT_VIOLATIONS: True})
    except ValidationError as error:
        return Loaded(path, None, tuple(_validation_findings(path, document, error)), document)
    violations = constraint_violations(model)
    if violations:
        located = [
            findings.make(v.rule, path, v.message, *document.position(v.at), automation=model.id)
            for v in violations
        ]
        return Loaded(path, None, tuple(located), document)
    return Loaded(path, model, (), document)


def load_config(path: str, content: bytes) -> Loaded[Config]:
    """Read `postwright.yaml`; an empty file is the default configuration."""
    document, found = read_yaml(path, content)
    if document is None or found:
        return Loaded(path, None, tuple(found), document)
    data = {} if document.data is None else document.data
    try:
        model = Config.model_validate(data)
    except ValidationError as error:
        return Loaded(path, None, tuple(_validation_findings(path, document, error)), document)
    return Loaded(path, model, (), document)


def _validation_findings(path: str, document: Document, error: ValidationError) -> list[Finding]:
    result: list[Finding] = []
    seen: set[Path] = set()
    for detail in error.errors(include_url=False):
        where = _written_path(document.data, detail["loc"])
        context = detail.get("ctx") or {}
        if detail["type"] == "union_tag_invalid":
            where = (*where, str(context.get("discriminator", "'type'")).strip("'"))
        if isinstance(context.get("at"), str) and context["at"]:
            where = (*where, *context["at"].split("."))
        if where in seen:
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
        result.append(findings.make(rule, path, message, line, col))
    return result


_CONDITION_TAGS = ("field", "in_group", "all", "any", "not")


def _union_tag(value: Mapping[Any, Any]) -> str | None:
    """The tag pydantic writes into `loc` after a discriminated union holding `value`."""
    kind = value.get("type")
    if isinstance(kind, str):
        return kind
    return next((key for key in _CONDITION_TAGS if key in value), None)


def _written_path(data: Any, loc: Sequence[int | str]) -> Path:
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
