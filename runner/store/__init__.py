"""Durable state of the runner: the Store protocol and one implementation per database."""

from __future__ import annotations

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
