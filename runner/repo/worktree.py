"""The work tree a command runs in: its top, its git folder, the files that differ from HEAD.

Each question is one git command through `runner.repo.git.run_git` (the only module that
starts git).
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import GitError
from runner.repo.git import Git, run_git

__all__ = ["dirty_paths", "find_git_dir", "open_repository", "top_level"]


def open_repository(root: Path) -> Git | None:
    """The repository's git, when `root` is the top of a work tree (None otherwise)."""
    if not (root / ".git").exists():
        return None
    try:
        return Git(root)
    except GitError:
        return None


def dirty_paths(root: Path) -> set[str]:
    """Paths whose file on disk differs from HEAD (`git status`, untracked files included)."""
    out = run_git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    return {e[3:].decode("utf-8", "surrogateescape") for e in out.split(b"\0") if len(e) > 3}


def find_git_dir(repo: Path) -> Path | None:
    """The Git folder of the checkout at `repo` (None when `repo` is not a work tree's top)."""
    try:
        out = run_git(repo, "rev-parse", "--show-toplevel", "--absolute-git-dir")
    except GitError:
        return None
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) != 2 or Path(lines[0]).resolve() != repo:
        return None
    return Path(lines[1]).resolve()


def top_level(folder: Path) -> Path | None:
    """The top of the git work tree enclosing `folder`, or None outside one."""
    try:
        out = run_git(folder, "rev-parse", "--show-toplevel")
    except GitError:
        return None
    return Path(out.decode("utf-8", "surrogateescape").strip())
