"""Snapshots: a repository state as a map from path to content id (pure protocol).

A snapshot may be a commit (read through git) or the working tree (read from
disk); checking code reads both through this one interface and caches its
work by content id, so an unchanged file costs nothing in a history walk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from runner.core.layout import AUTOMATIONS_DIR, CONFIG_PATH
from runner.repo.files import Refused, is_present, read_repo_file, walk_directory


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
        """The contents of `path`, or None if absent or refused."""

    def refusal(self, path: str) -> Refused | None:
        """Why the present `path` is not read (it leaves the repository, is a special file
        or too large), or None."""


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

    def refusal(self, path: str) -> Refused | None:
        """Nothing held in memory is refused."""
        return None


def git_blob_id(content: bytes) -> str:
    """The id git gives `content` as a blob (SHA-1 of the header and bytes)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


class DirectorySnapshot:
    """The files under `root` as they are on disk, read lazily through `runner.repo.files`."""

    commit: str | None = None

    def __init__(self, root: Path, paths: Iterable[str]) -> None:
        self.root = root
        self._paths = sorted(set(paths))
        self._ids: dict[str, str | None] = {}
        # Checking asks for a file's id, then for its bytes: read each file once.
        self._contents: dict[str, bytes | Refused | None] = {}

    def paths(self) -> Iterable[str]:
        """The paths this snapshot was made with."""
        return self._paths

    def _load(self, path: str) -> bytes | Refused | None:
        if path not in self._contents:
            self._contents[path] = read_repo_file(self.root, path)
        return self._contents[path]

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist or is refused."""
        content = self._load(path)
        return content if isinstance(content, bytes) else None

    def refusal(self, path: str) -> Refused | None:
        """Why the file is not read, if it is refused."""
        content = self._load(path)
        return content if isinstance(content, Refused) else None

    def blob_id(self, path: str) -> str | None:
        """The git blob id of the file's contents (a refusal has an id of its own)."""
        if path not in self._ids:
            content = self._load(path)
            if isinstance(content, Refused):
                self._ids[path] = content.id
            else:
                self._ids[path] = None if content is None else git_blob_id(content)
        return self._ids[path]


def working_files(root: Path) -> DirectorySnapshot:
    """The automation files and `postwright.yaml` as they are on disk under `root`."""
    paths = walk_directory(root, [AUTOMATIONS_DIR.rstrip("/")])
    if is_present(root, CONFIG_PATH):
        paths.append(CONFIG_PATH)
    return DirectorySnapshot(root, paths)


class OverlaySnapshot:
    """A commit's files with the uncommitted ones read from disk."""

    commit: str | None = None

    def __init__(self, base: Snapshot, root: Path, dirty: Collection[str]) -> None:
        self._base = base
        self._dirty = frozenset(dirty)
        self._disk = DirectorySnapshot(root, self._dirty)

    def paths(self) -> Iterable[str]:
        """The commit's paths without removed files, and the new files."""
        kept = [p for p in self._base.paths() if p not in self._dirty]
        return kept + [p for p in self._dirty if is_present(self._disk.root, p)]

    def blob_id(self, path: str) -> str | None:
        """The content id on disk for uncommitted paths, else in the commit."""
        source = self._disk if path in self._dirty else self._base
        return source.blob_id(path)

    def read(self, path: str) -> bytes | None:
        """The bytes on disk for uncommitted paths, else in the commit."""
        source = self._disk if path in self._dirty else self._base
        return source.read(path)

    def refusal(self, path: str) -> Refused | None:
        """Why the file on disk or in the commit is not read, if it is refused."""
        source = self._disk if path in self._dirty else self._base
        return source.refusal(path)
