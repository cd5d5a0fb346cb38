"""A commit's files for checking: path -> blob id, contents read through `runner.repo.git.Git`.

A symlink committed in the repository is followed inside the commit: reading it reads the
file it names, and one that leads outside the repository (an absolute target, `..` past the
top) or into its private folders is refused, never read from disk.
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from runner.repo.files import MAX_FILE_BYTES, PRIVATE_FOLDERS, Refused

if TYPE_CHECKING:
    from runner.repo.git import Git

MAX_LINK_HOPS = 40  # as Linux's limit on symlinks followed in one path
_PRIVATE_PREFIXES = tuple(f"{folder}/" for folder in PRIVATE_FOLDERS)


class Entry(NamedTuple):
    """A file of a commit: its blob id, and whether it is a symlink (the blob is its target)."""

    blob: str
    link: bool = False


class GitSnapshot:
    """A commit's files as path -> blob id; contents are read on demand."""

    def __init__(
        self, git: Git, commit: str, blobs: dict[str, str], links: dict[str, str] | None = None
    ) -> None:
        self.git = git
        self.commit: str | None = commit
        self._blobs = blobs
        self._links = links or {}
        self._followed: dict[str, str | Refused | None] = {}

    def paths(self) -> Iterable[str]:
        """Every regular file and symlink of the commit."""
        return itertools.chain(self._blobs.keys(), self._links.keys())

    def blob_id(self, path: str) -> str | None:
        """The blob id of the file `path` names in the commit (a refusal has an id of its own)."""
        blob = self._blobs.get(path)
        if blob is not None and not path.startswith(_PRIVATE_PREFIXES):
            return blob
        target = self._target(path)
        if isinstance(target, Refused):
            return target.id
        return None if target is None else self._blobs[target]

    def read(self, path: str) -> bytes | None:
        """The blob's bytes, through `git cat-file --batch`; None when absent or refused."""
        blob = self.blob_id(path)
        if blob is None or self.refusal(path) is not None:
            return None
        return self.git.read_blob(blob)

    def refusal(self, path: str) -> Refused | None:
        """Why `path` is not read: a symlink leaving the repository, or a blob over 1 MiB."""
        target = self._target(path)
        if isinstance(target, Refused):
            return target
        if target is not None and self._blobs[target] in self.git.oversized:
            message = f"`{path}` is larger than {MAX_FILE_BYTES:,} bytes, the most read"
            return Refused("file-too-large", message)
        return None

    def changed(self, commit: str, changes: Mapping[str, Entry | None]) -> GitSnapshot:
        """The snapshot of `commit`, given its changes (path -> entry, None = gone)."""
        blobs, links = dict(self._blobs), dict(self._links)
        for path, entry in changes.items():
            blobs.pop(path, None)
            links.pop(path, None)
            if entry is not None:
                (links if entry.link else blobs)[path] = entry.blob
        return GitSnapshot(self.git, commit, blobs, links)

    def _target(self, path: str) -> str | Refused | None:
        """The regular file `path` names once symlinks are followed, or why it is refused."""
        if path not in self._followed:
            self._followed[path] = self._follow(path)
        return self._followed[path]

    def _follow(self, path: str) -> str | Refused | None:
        parts, hops = path.split("/"), 0
        done: list[str] = []
        while parts:
            here = "/".join([*done, parts[0]])
            link = self._links.get(here)
            if link is None:
                done.append(parts.pop(0))
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                return Refused("file-not-regular", f"`{path}`: too many levels of symlinks")
            raw = self.git.read_blob(link) or b""
            target = raw.decode("utf-8", "surrogateescape")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(here), target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                message = f"`{path}` is a symlink to `{target}`, outside the repository"
                return Refused("file-outside-repo", message)
            parts = [p for p in joined.split("/") if p not in ("", ".")] + parts[1:]
            done = []
        if done and done[0] in PRIVATE_FOLDERS:
            message = f"`{path}` leads into `{done[0]}/`, which holds git's or the runner's data"
            return Refused("file-outside-repo", message)
        resolved = "/".join(done)
        return resolved if resolved in self._blobs else None
