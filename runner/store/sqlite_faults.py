"""What went wrong with a SQLite file, told in one line that names the file and what to do.

SQLite reports a damaged file, a read-only folder, a lock held by another program or a full
disk as `sqlite3.Error` with a result code; the operating system reports some of them as
`OSError` before SQLite is reached. Both become a `StoreError` (exit 2) here.
See https://www.sqlite.org/rescode.html for the codes.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import TypeGuard

from runner.store.errors import StoreError, StoreUnavailable

# Primary result codes (the low byte of an extended code).
_BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _CORRUPT = 5, 6, 7, 8, 10, 11
_FULL, _CANTOPEN, _PERM, _NOTADB = 13, 14, 3, 26
# Codes that describe the file, the disk or another process, never the statement: work that
# met one was rolled back and may succeed later; it says nothing about the data at hand.
_FAULTS = frozenset({_BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN})
_DAMAGED = frozenset({_CORRUPT, _NOTADB})
_NOT_WRITABLE = frozenset({_READONLY, _CANTOPEN, _PERM})
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def primary_code(error: sqlite3.Error) -> int | None:
    """The primary result code of a SQLite error (None for errors raised by the module)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_store_fault(error: BaseException) -> TypeGuard[sqlite3.Error]:
    """Whether `error` comes from the file, the disk or another process, not from the SQL."""
    return isinstance(error, sqlite3.Error) and primary_code(error) in _FAULTS


def is_read_fault(error: BaseException) -> TypeGuard[sqlite3.Error]:
    """`is_store_fault` for a read: readers are opened read-only, so "readonly" there means
    the work tried to write (a bug), not that the file cannot be written."""
    return is_store_fault(error) and primary_code(error) != _READONLY


def unavailable(error: sqlite3.Error) -> StoreUnavailable:
    """A fault met while running: the transaction was rolled back; the work may be retried."""
    failure = StoreUnavailable(f"the SQLite database failed: {error}")
    failure.__cause__ = error
    return failure


def damaged(path: Path, detail: str) -> StoreError:
    """The file is not a sound SQLite database (corrupt pages, a bad header, truncated)."""
    return StoreError(
        f"{path} is damaged ({detail}): stop every process using it, restore the file from a "
        f"backup (or salvage what is left with `sqlite3 {path} .recover`), then start again"
    )


def startup_error(path: Path, error: sqlite3.Error | OSError) -> StoreError:
    """The one-line explanation of why the store at `path` cannot be opened."""
    folder = path.parent
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        if error.errno in _NO_SPACE_ERRNOS:
            return _no_space(path, reason)
        if error.errno in _DENIED_ERRNOS:
            return _not_writable(path, reason)
        return StoreError(f"cannot open {path}: {reason}")
    code = primary_code(error)
    if code in _DAMAGED:
        return damaged(path, str(error))
    if code in _NOT_WRITABLE:
        return _not_writable(path, str(error))
    if code in (_BUSY, _LOCKED):
        return StoreError(
            f"{path} is locked by another process ({error}): stop the program holding it "
            "(a `sqlite3` shell, a backup or copy tool, another runner), then start again"
        )
    if code == _FULL:
        return _no_space(path, str(error))
    if code == _IOERR:
        return StoreError(
            f"cannot read or write {path} ({error}): check the disk and the file system of "
            f"{folder}, then start again"
        )
    return StoreError(f"cannot open {path}: {error}")


def _not_writable(path: Path, reason: str) -> StoreError:
    return StoreError(
        f"cannot write {path} ({reason}): the runner needs to write the file and its folder "
        f"{path.parent} (SQLite keeps {path.name}-wal and {path.name}-shm beside it); fix the "
        "permissions, or point POSTWRIGHT_DATABASE_URL at a writable place"
    )


def _no_space(path: Path, reason: str) -> StoreError:
    return StoreError(
        f"no space left for {path} ({reason}): free disk space in {path.parent}, then start again"
    )
