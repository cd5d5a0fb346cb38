"""Where the repository is: `--repo`, else the enclosing git work tree, else the current folder."""

from __future__ import annotations

from pathlib import Path

from runner.errors import UsageError
from runner.repo.git import top_level


def repo_root(given: Path | None) -> Path:
    """The repository root: --repo, else the enclosing git work tree, else the current folder."""
    if given is not None:
        if not given.is_dir():
            raise UsageError(f"--repo {given} is not a folder")
        return given.resolve()
    return top_level(Path.cwd()) or Path.cwd()
