"""What a checking command looks at: the project folder, the base, the paths asked about.

A run that finds nothing to check never says "no findings": it exits 2 and names what it
looked for (docs/output-formats.md, "Where validate looks").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from runner.checking.bases import AUTO, Base, resolve_base
from runner.checking.tree import Tree
from runner.core.findings import Finding
from runner.core.layout import AUTOMATIONS_DIR
from runner.errors import UsageError
from runner.repo.workspace import Project, has_automations

_SEARCH_DEPTH = 3  # folders below the top searched for a hint


class NothingToCheck(UsageError):
    """No automations where the command looked: exit 2, never a clean result."""


def base_of(project: Project, given: str | None) -> Base | None:
    """The base of `--base` (`auto` resolved), announced on stderr."""
    if given is None:
        return None
    base = resolve_base(project.root, given, os.environ)
    if given == AUTO:
        print(f"postwright: --base auto: {base.why}", file=sys.stderr)
    return base


def require_automations(project: Project, *trees: Tree) -> None:
    """NothingToCheck when neither the folder nor any checked tree holds automation files."""
    if has_automations(project.root) or any(tree.files for tree in trees):
        return
    where = project.root / AUTOMATIONS_DIR
    message = f"nothing to check: no automations/ folder in {project.root} (looked for {where})"
    hints = _elsewhere(project)
    if hints:
        message += f"; automations found in {', '.join(hints)}: run there or give --repo"
    else:
        message += "; run in the folder that holds automations/, or give --repo FOLDER"
    raise NothingToCheck(message)


def _elsewhere(project: Project) -> list[str]:
    """Folders a few levels below the work tree's top that hold `automations/`."""
    top = _top(project)
    found: list[str] = []
    for depth in range(_SEARCH_DEPTH):
        for path in sorted(top.glob("/".join(["*"] * depth + ["automations"]))):
            if path.is_dir() and ".git" not in path.parts and path.parent != project.root:
                found.append(str(path.parent.relative_to(top)) or ".")
    return found[:5]


def _top(project: Project) -> Path:
    depth = project.prefix.count("/")
    return project.root.parents[depth - 1] if depth else project.root


def wanted_paths(
    project: Project, given: Sequence[str], known: Iterable[str], templates: dict[str, set[str]]
) -> set[str]:
    """The root-relative paths (and folders) `validate PATH...` reports on.

    A path must exist on disk or in a checked tree (`known`: a file the branch deletes);
    a template widens to the automations that read it.
    """
    root = project.root
    present = set(known)
    wanted: set[str] = set()
    for text in given:
        path = Path(text)
        absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
        try:
            relative = absolute.relative_to(root).as_posix()
        except ValueError:
            raise NothingToCheck(
                f"nothing to check: {text} is outside the project folder {root}"
            ) from None
        relative = "" if relative == "." else relative
        inside = relative + "/"
        if not (
            absolute.exists() or relative in present or any(p.startswith(inside) for p in present)
        ):
            raise NothingToCheck(f"nothing to check: {text} does not exist (looked for {absolute})")
        wanted.add(relative)
        wanted |= templates.get(relative, set())
    return wanted


def only(found: Iterable[Finding], wanted: set[str]) -> list[Finding]:
    """The findings in the wanted files or under the wanted folders."""
    if "" in wanted:
        return list(found)
    folders = tuple(w + "/" for w in wanted)
    return [f for f in found if f.path in wanted or f.path.startswith(folders)]


def from_top(project: Project, found: Iterable[Finding]) -> list[Finding]:
    """Findings with paths from the work tree's top (what annotations and editors expect)."""
    if not project.prefix:
        return list(found)
    return [replace(f, path=project.from_top(f.path)) for f in found]
