"""Durable state of the runner: the Store protocol and one implementation per database."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from runner.clock import Clock
from runner.store.base import Store, StoreError

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIX = "postgresql://"


def open_store(url: str, clock: Clock) -> Store:
    """Open (creating folders and schema as needed) the store a URL names:
    `sqlite:///<path>` or `postgresql://...` (a libpq connection URI).

    The SQLite path after the prefix is taken as written: `sqlite:///.postwright/runner.db`
    is relative to the working directory, `sqlite:////var/lib/pw.db` is absolute.
    """
    if url.startswith(POSTGRES_PREFIX):
        from runner.store.postgres import PostgresStore

        return PostgresStore(url, clock)
    if not url.startswith(SQLITE_PREFIX):
        raise StoreError(
            f"unsupported store URL {url!r}: expected sqlite:///<path> or postgresql://..."
        )
    path = Path(url[len(SQLITE_PREFIX) :])
    if not path.name:
        raise StoreError(f"store URL {url!r} names no file")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Imported here so the protocol can be used without loading a database driver.
    from runner.store.sqlite import SqliteStore

    return SqliteStore(path, clock)


class ReplicaLockError(StoreError):
    """A second runner on one SQLite file: several replicas need PostgreSQL."""

    exit_code = 2


@contextlib.contextmanager
def single_runner(url: str) -> Iterator[None]:
    """Hold, for as long as a runner serves, the right to be the only one on a SQLite file.

    SQLite serves one machine and one runner (SPEC 8); a second `serve` on the same file
    is refused at once, while short CLI commands (`stats`, `pending`) may still open it.
    PostgreSQL needs no such lock: replicas share it by design.
    """
    if not url.startswith(SQLITE_PREFIX):
        yield
        return
    path = Path(url[len(SQLITE_PREFIX) :])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".runner-lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReplicaLockError(
                f"another `postwright serve` is already running on {path}: SQLite serves one "
                f"runner; for several replicas set POSTWRIGHT_DATABASE_URL=postgresql://..."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
