"""The one door from the repository's files on disk to bytes.

Every file that validation, the reloader and the `render` command read from disk comes
through `read_repo_file`: the path is resolved (symlinks followed, then checked), must stay
inside the repository and out of its private folders, must be a regular file (a FIFO, a
device or a socket is never opened, so nothing can hang or stream without end) and is read
up to a size cap. A file that fails any of this is `Refused`, carrying the rule id of the
finding it becomes (docs/rules.md).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 1 << 20  # automation files, templates and postwright.yaml alike
# Folders of the checkout that hold git's and the runner's own data (the database, the
# GitOps clone): never template material, whatever a path or symlink names.
PRIVATE_FOLDERS = frozenset({".git", ".postwright"})
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


@dataclass(frozen=True)
class Refused:
    """A present file that is not read, and why: `rule` is the finding's rule id."""

    rule: str
    message: str

    @property
    def id(self) -> str:
        """A content id standing for this refusal (equal refusals, equal ids)."""
        digest = hashlib.sha1(f"{self.rule}\0{self.message}".encode(), usedforsecurity=False)
        return "refused-" + digest.hexdigest()


def read_repo_file(root: Path, path: str, limit: int = MAX_FILE_BYTES) -> bytes | Refused | None:
    """The bytes of the repository-relative `path` under `root`; None when it does not exist."""
    base = os.path.realpath(root)
    real = os.path.realpath(os.path.join(base, path))
    refused = confine(base, real, path)
    if refused is not None:
        return refused
    try:
        info = os.stat(real)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        return Refused("file-unreadable", f"`{path}` cannot be read: {error.strerror}")
    # Decided on stat alone: opening a device can have effects, and reading one never ends.
    refused = regular_file(path, info, limit)
    if refused is not None:
        return refused
    try:
        descriptor = os.open(real, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        return Refused("file-unreadable", f"`{path}` cannot be read: {error.strerror}")
    try:
        # The path may have been swapped for something else since the stat above.
        refused = regular_file(path, os.fstat(descriptor), limit)
        if refused is not None:
            return refused
        content = _read_at_most(descriptor, limit + 1)
    except OSError as error:
        return Refused("file-unreadable", f"`{path}` cannot be read: {error.strerror}")
    finally:
        os.close(descriptor)
    if len(content) > limit:
        return _too_large(path, limit)
    return content


def confine(base: str, real: str, path: str) -> Refused | None:
    """Refuse `real` (resolved) unless it is inside `base` and outside its private folders."""
    try:
        inside = Path(real).relative_to(base).parts
    except ValueError:
        message = f"`{path}` resolves to `{real}`, outside the repository"
        return Refused("file-outside-repo", message)
    if inside and inside[0] in PRIVATE_FOLDERS:
        message = f"`{path}` resolves into `{inside[0]}/`, which holds git's or the runner's data"
        return Refused("file-outside-repo", message)
    return None


def regular_file(path: str, info: os.stat_result, limit: int) -> Refused | None:
    """Refuse anything but a regular file of at most `limit` bytes."""
    if not stat.S_ISREG(info.st_mode):
        return Refused("file-not-regular", f"`{path}` is {_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        return _too_large(path, limit)
    return None


def is_present(root: Path, path: str) -> bool:
    """Whether anything but a folder is at `path` (a symlink or FIFO counts: it gets a finding)."""
    full = root / path
    return os.path.lexists(full) and not (full.is_dir() and not full.is_symlink())


def walk_directory(root: Path, folders: Iterable[str]) -> list[str]:
    """Repository-relative paths of every entry below `folders` of `root` that is not a folder.

    Symlinks and special files are listed too (reading them decides); symlinked folders are
    listed, not entered.
    """
    found: list[str] = []
    for folder in folders:
        for current, folder_names, file_names in os.walk(root / folder):
            here = Path(current)
            linked = [name for name in folder_names if (here / name).is_symlink()]
            for name in (*file_names, *linked):
                found.append((here / name).relative_to(root).as_posix())
    return found


def _read_at_most(descriptor: int, count: int) -> bytes:
    chunks: list[bytes] = []
    left = count
    while left > 0:
        chunk = os.read(descriptor, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _too_large(path: str, limit: int) -> Refused:
    return Refused("file-too-large", f"`{path}` is larger than {limit:,} bytes, the most read")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"
