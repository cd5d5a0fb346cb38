"""Snapshots: a repository state as a map from path to content id (pure protocol).

A snapshot may be a commit (read through git) or the working tree (read from
disk); checking code reads both through this one interface and caches its
work by content id, so an unchanged file costs nothing in a history walk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Snapshot(Protocol):
    """A repository state: which paths exist, their content ids and contents."""

    @property
    def commit(self) -> str | None:
        """The commit this snapshot is, or None for the working tree."""

    def paths(self) -> Iterable[str]:
        """Every repository-relative path (forward slashes) in the snapshot."""

    def blob_id(self, path: str) -> str | None:
        """A content id of `path` (equal ids mean equal contents), or None if absent."""

    def read(self, path: str) -> bytes | None:
        """The contents of `path`, or None if absent."""


@dataclass
class MemorySnapshot:
    """A snapshot held in memory: tests and the working tree reader use it."""

    files: Mapping[str, bytes]
    commit: str | None = None

    def paths(self) -> Iterable[str]:
        """Every path of the snapshot."""
        return self.files.keys()

    def blob_id(self, path: str) -> str | None:
        """The git blob id of the content, so ids agree with git snapshots."""
        content = self.files.get(path)
        return None if content is None else git_blob_id(content)

    def read(self, path: str) -> bytes | None:
        """The bytes of `path`."""
        return self.files.get(path)


def git_blob_id(content: bytes) -> str:
    """The id git gives `content` as a blob (SHA-1 of the header and bytes)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


class DirectorySnapshot:
    """The files under `root` as they are on disk, read lazily (no git needed)."""

    commit: str | None = None

    def __init__(self, root: Path, paths: Iterable[str]) -> None:
        self.root = root
        self._paths = sorted(set(paths))
        self._ids: dict[str, str | None] = {}
        # Checking asks for a file's id, then for its bytes: read each file once.
        self._contents: dict[str, bytes | None] = {}

    def paths(self) -> Iterable[str]:
        """The paths this snapshot was made with."""
        return self._paths

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        if path not in self._contents:
            try:
                self._contents[path] = (self.root / path).read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                self._contents[path] = None
        return self._contents[path]

    def blob_id(self, path: str) -> str | None:
        """The git blob id of the file's contents."""
        if path not in self._ids:
            content = self.read(path)
            self._ids[path] = None if content is None else git_blob_id(content)
        return self._ids[path]


def walk_directory(root: Path, folders: Iterable[str]) -> list[str]:
    """Repository-relative paths of every file below `folders` of `root`."""
    found: list[str] = []
    for folder in folders:
        base = root / folder
        if base.is_dir():
            found.extend(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())
    return found
