"""Where the repository is: `--repo`, else the enclosing git work tree, else the current folder.

The checking commands look for the *project*: the folder that holds `automations/`, which may
be a sub-folder of a larger repository (`mail/automations/...`). Findings still name paths from
the top of the git work tree, so annotations land on the right file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.core.layout import AUTOMATIONS_DIR, CONFIG_PATH
from runner.errors import UsageError
from runner.repo.worktree import top_level

_AUTOMATIONS = AUTOMATIONS_DIR.rstrip("/")


def repo_root(given: Path | None) -> Path:
    """The repository root: --repo, else the enclosing git work tree, else the current folder."""
    if given is not None:
        if not given.is_dir():
            raise UsageError(f"--repo {given} is not a folder")
        return given.resolve()
    return top_level(Path.cwd()) or Path.cwd()


@dataclass(frozen=True)
class Project:
    """The folder holding `automations/` and where it sits in its git work tree."""

    root: Path
    prefix: str  # the root relative to the work tree's top: "" or "mail/"

    def from_top(self, path: str) -> str:
        """A root-relative path as the work tree's top names it."""
        return self.prefix + path


def find_project(given: Path | None, paths: Sequence[str] = ()) -> Project:
    """--repo, else the nearest folder from the current one up to the work tree's top that
    holds `automations/` or `postwright.yaml`, else the one enclosing the first of `paths`
    (a hook run from the top of a monorepo), else the top (or the current folder)."""
    if given is not None:
        root = repo_root(given)
    else:
        here = Path.cwd().resolve()
        top = top_level(here)
        stop = top.resolve() if top is not None else here
        found = _enclosing(here, stop)
        if found is None and paths:
            found = _enclosing((here / paths[0]).resolve().parent, stop)
        root = found or stop
    top = top_level(root)
    prefix = ""
    if top is not None:
        relative = root.relative_to(top.resolve()).as_posix()
        prefix = "" if relative == "." else relative + "/"
    return Project(root, prefix)


def _enclosing(folder: Path, stop: Path) -> Path | None:
    """The nearest of `folder` and its parents up to `stop` that is a project folder."""
    if folder != stop and stop not in folder.parents:
        return None
    for candidate in (folder, *folder.parents):
        if (candidate / _AUTOMATIONS).is_dir() or (candidate / CONFIG_PATH).is_file():
            return candidate
        if candidate == stop:
            break
    return None


def has_automations(root: Path) -> bool:
    """Whether `root` has an `automations/` folder on disk."""
    return (root / _AUTOMATIONS).is_dir()
