"""Where the repository is: `--repo`, else the enclosing git work tree, else the current folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

from runner.errors import UsageError


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
