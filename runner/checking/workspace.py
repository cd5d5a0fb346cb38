"""Where the repository is and what its files hold right now (the working tree)."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

from runner.checking.tree import Tree, TreeChecker
from runner.core.layout import AUTOMATIONS_DIR, CONFIG_PATH
from runner.errors import UsageError
from runner.repo.files import is_present, walk_directory
from runner.repo.snapshot import DirectorySnapshot


def repo_root(given: Path | None) -> Path:
    """The repository root: --repo, else the enclosing git work tree, else the current folder."""
    if given is not None:
        if not given.is_dir():
            raise UsageError(f"--repo {given} is not a folder")
        return given.resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return Path.cwd()
    return Path(top)


def check_working_tree(root: Path, now: datetime) -> Tree:
    """The files on disk checked without history."""
    paths = walk_directory(root, [AUTOMATIONS_DIR.rstrip("/")])
    if is_present(root, CONFIG_PATH):
        paths.append(CONFIG_PATH)
    return TreeChecker().check(DirectorySnapshot(root, paths), now)
