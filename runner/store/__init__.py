"""Durable state of the runner: the Store protocol and one implementation per database."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from runner.core.clock import Clock
from runner.core.store_options import DEFAULT_OPTIONS, StoreOptions
from runner.store.base import Store
from runner.store.errors import StoreError

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIX = "postgresql://"


def open_store(url: str, clock: Clock, options: StoreOptions = DEFAULT_OPTIONS) -> Store:
    """Open (creating folders and schema as needed) the store a URL names:
    `sqlite:///<path>` or `postgresql://...` (a libpq connection URI).

    The SQLite path after the prefix is taken as written: `sqlite:///.postwright/runner.db`
    is relative to the working directory, `sqlite:////var/lib/pw.db` is absolute.
    """
    if url.startswith(POSTGRES_PREFIX):
        from runner.store.postgres import PostgresStore

        return PostgresStore(url, clock, options)
    path = sqlite_path(url)
    # Imported here so the protocol can be used without loading a database driver.
    from runner.store.sqlite import SqliteStore

    return SqliteStore(path, clock, options)


def sqlite_path(url: str) -> Path:
    """The file a `sqlite:///` URL names, its folder created when missing."""
    if not url.startswith(SQLITE_PREFIX):
        raise StoreError(
            f"unsupported store URL {url!r}: expected sqlite:///<path> or postgresql://..."
        )
    path = Path(url[len(SQLITE_PREFIX) :])
    if not path.name:
        raise StoreError(f"store URL {url!r} names no file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        from runner.store.sqlite_faults import startup_error

        raise startup_error(path, error) from error
    return path


class ReplicaLockError(StoreError):
    """A second runner on one SQLite file: several replicas need PostgreSQL."""

    exit_code = 2


@contextlib.contextmanager
def single_runner(url: str) -> Iterator[None]:
    """Hold, for as long as a runner serves, the right to be the only one on a SQLite file.

    SQLite serves one machine and one runner (docs/scaling.md); a second `serve` on the same file
    is refused at once, whatever path names it (a symlink, a hard link, another mount of
    the folder): the lock is a `flock` on the database file itself, which SQLite never
    takes (it locks byte ranges with `fcntl`), so readers, the WAL and short CLI commands
    (`stats`, `pending`) work as before. The descriptor stays open until the block ends,
    after the store is closed: closing a descriptor of the file would drop the process's
    `fcntl` locks on it, SQLite's included. PostgreSQL needs no such lock: replicas share it
    by design.
    """
    if not url.startswith(SQLITE_PREFIX):
        yield
        return
    path = sqlite_path(url)
    try:
        # Read-only is enough for flock, and works on a file the runner cannot write (the
        # store then says so itself, with a better message).
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        from runner.store.sqlite_faults import startup_error

        raise startup_error(path, error) from error
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReplicaLockError(
                f"another `postwright serve` is already running on {path.resolve()}: SQLite "
                "serves one runner; for several replicas set "
                "POSTWRIGHT_DATABASE_URL=postgresql://..."
            ) from None
        yield
    finally:
        os.close(descriptor)  # releases the flock too
