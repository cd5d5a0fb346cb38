"""A valid version of one automation and its compared definition (docs/rules.md, `edit-*`); pure.

The compared definition is the validated model with defaults filled in, minus
status, lifecycle times and metadata, with every body taken from its template
file when it has one: so re-formatting, written-out defaults and moving a body
between inline and file are not edits, while changing a template file is.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.core.loader import Loaded
from runner.core.model import Automation

NOT_COMPARED = frozenset({"status", "start_at", "stop_at", "name", "description", "labels"})
METADATA = ("name", "description", "labels")
BODY_FILES = {"html_file": "html", "text_file": "text"}


def resolve_template_path(automation_path: str, relative: str) -> str | None:
    """The repository path of a template named relative to its automation file.

    None when the path is absolute or leaves the repository.
    """
    if relative.startswith("/") or "\\" in relative:
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(automation_path), relative))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        return None
    return joined


def template_paths(path: str, model: Automation) -> dict[str, str | None]:
    """`html_file` / `text_file` key -> resolved repository path (None if outside)."""
    email = model.email
    named = {"html_file": email.html_file, "text_file": email.text_file}
    return {key: resolve_template_path(path, value) for key, value in named.items() if value}


def normalised_definition(model: Automation, templates: Mapping[str, str]) -> dict[str, Any]:
    """The definition compared by the edit rule; `templates` maps key -> file text."""
    data = model.model_dump(
        mode="json", by_alias=True, exclude=set(NOT_COMPARED), exclude_none=True
    )
    email = data["email"]
    for key, body in BODY_FILES.items():
        if key in templates:
            email[body] = templates[key]
        email.pop(key, None)
    return data


def diff_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON-like values differ (`email.subject`, `exit_on`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changed: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            child = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                changed.append(child)
            else:
                changed.extend(diff_paths(old[key], new[key], child))
        return changed
    return [] if old == new else [prefix or "(whole definition)"]


@dataclass(frozen=True)
class Version:
    """A valid automation as read from one snapshot, ready for the change rules."""

    loaded: Loaded[Automation]
    templates: Mapping[str, str] = field(default_factory=dict)
    definition: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, loaded: Loaded[Automation], templates: Mapping[str, str]) -> Version:
        """Build a version from a valid loaded file and its template texts by key."""
        assert loaded.model is not None, "only valid files have versions"
        return cls(loaded, dict(templates), normalised_definition(loaded.model, templates))

    @property
    def model(self) -> Automation:
        """The validated model."""
        assert self.loaded.model is not None
        return self.loaded.model

    @property
    def id(self) -> str:
        """The automation id."""
        return self.model.id

    @property
    def path(self) -> str:
        """The repository path the version was read from."""
        return self.loaded.path

    def position(self, *path: str | int, key: bool = False) -> tuple[int, int]:
        """Line and column of a key path in the file."""
        return self.loaded.position(*path, key=key)

    def metadata(self) -> dict[str, Any]:
        """name, description and labels, for the metadata rule and plans."""
        return {key: getattr(self.model, key) for key in METADATA}
