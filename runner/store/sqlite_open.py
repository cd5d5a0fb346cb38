"""Opening a SQLite file: connections with the store's pragmas, the start-up integrity check,
and the versioned migrations. A file that cannot serve (damaged, read-only, locked, on a
full disk, migrated by a newer release) stops the start with one clear line.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.core.clock import Clock
from runner.store.errors import StoreError
from runner.store.sqlite_faults import damaged, startup_error
from runner.store.sqlite_rows import time_text
from runner.store.versions import migration_files, refuse_unknown

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
_CHECK_ROWS = 3  # problems quoted from quick_check at most
_READ_AHEAD_CHUNK = 1 << 20

# The settings the store relies on; checked on every connection it opens.
PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": 2,  # FULL: the WAL is synced at every commit, so a 202 survives power loss
    "busy_timeout": BUSY_TIMEOUT_MS,
    "foreign_keys": 1,
    # Freed space is zeroed, so an erased address leaves no copy in free pages or cells.
    "secure_delete": 1,
}


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the store's pragmas set and checked (StoreError when one did not hold)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA secure_delete = ON")
        for name, wanted in PRAGMAS.items():
            found = db.execute(f"PRAGMA {name}").fetchone()[0]
            if found != wanted:
                raise StoreError(f"{path}: PRAGMA {name} is {found!r}, the store needs {wanted!r}")
        if readonly:
            db.execute("PRAGMA query_only = ON")
    except BaseException:
        db.close()
        raise
    return db


def open_writer(
    path: Path, clock: Clock, *, integrity_check: bool
) -> tuple[sqlite3.Connection, list[int]]:
    """The writer connection of a checked, migrated file, and the migrations applied now.

    With `integrity_check`, `PRAGMA quick_check` reads the whole file first (about a second
    per GB, docs/scaling.md), so a damaged file is refused before it is served. Every
    failure is a StoreError whose one line names the file and what to do.
    """
    try:
        if integrity_check:
            _read_ahead(path)
        db = connect(path)
    except (sqlite3.Error, OSError) as error:
        raise startup_error(path, error) from error
    try:
        if integrity_check:
            check_integrity(db, path)
        migrated = migrate(db, clock)
        _check_writable(db)
        return db, migrated
    except (sqlite3.Error, OSError) as error:
        db.close()
        raise startup_error(path, error) from error
    except BaseException:
        db.close()
        raise


def check_integrity(db: sqlite3.Connection, path: Path) -> None:
    """Raise a StoreError quoting the first problems `PRAGMA quick_check` finds in the file.

    quick_check verifies every page's structure, not that indexes match their tables (that
    is integrity_check, several times slower): enough to find pages overwritten or lost.
    """
    rows = [row[0] for row in db.execute(f"PRAGMA quick_check({_CHECK_ROWS})")]
    if rows == ["ok"]:
        return
    # The first row may hold several problems on lines of their own, after a heading.
    lines = [line for row in rows for line in str(row).splitlines() if not line.startswith("***")]
    raise damaged(path, "; ".join(lines[:_CHECK_ROWS]))


def _read_ahead(path: Path) -> None:
    """Read the file once from start to end, so that quick_check, which visits pages in
    tree order, finds them in the page cache: on a cold 1 GB file about 1 s in all instead
    of 15 s of scattered reads (benchmarks/integrity.py).

    It must run before this process opens a connection to the file: closing any descriptor
    of a file drops every `fcntl` lock the process holds on it, and SQLite's shared lock
    is what keeps another process that closes its last connection (`postwright stats`)
    from checkpointing and deleting the write-ahead log under the running server.
    """
    if not path.exists():  # a new database: nothing to read
        return
    with path.open("rb", buffering=0) as file:
        while file.read(_READ_AHEAD_CHUNK):
            pass


def _check_writable(db: sqlite3.Connection) -> None:
    """Write the header's user_version back unchanged: a file SQLite could open read-only
    only fails here, not at the first event, and a lock another process holds is waited for
    (busy_timeout) and reported like any other start-up failure."""
    with transaction(db):
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        db.execute(f"PRAGMA user_version = {version}")


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, one by one (triggers' inner `;` handled)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    leftover = [
        line for line in buffer.splitlines() if line.strip() and not line.strip().startswith("--")
    ]
    if leftover:
        raise StoreError(f"unterminated SQL statement in a migration: {leftover[0].strip()[:60]}")


def migrate(db: sqlite3.Connection, clock: Clock, directory: Path = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded in schema_migrations, in one transaction each.

    Files are named `NNNN_name.sql`; returns the versions applied now. A database that
    records a version this release lacks is refused (SchemaTooNew). When every version is
    recorded nothing is written, so a short command never waits for a busy runner's writer.
    """
    files = migration_files(directory)
    recorded = _recorded_versions(db)
    refuse_unknown(recorded, files, _file_name(db))
    applied: list[int] = []
    for version, path in files.items():
        if version in recorded:
            continue
        with transaction(db):
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = db.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
            ).fetchone()
            if done is not None:  # another process applied it since we looked
                continue
            for statement in _statements(path.read_text(encoding="utf-8")):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, path.stem, time_text(clock.now())),
            )
            applied.append(version)
    return applied


def _recorded_versions(db: sqlite3.Connection) -> set[int]:
    with transaction(db, "BEGIN"):  # one snapshot for both questions
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if exists is None:
            return set()
        return {row[0] for row in db.execute("SELECT version FROM schema_migrations")}


def _file_name(db: sqlite3.Connection) -> str:
    return str(db.execute("PRAGMA database_list").fetchone()[2] or "the database")


@contextmanager
def transaction(db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """BEGIN (IMMEDIATE: take the write lock now), COMMIT when the block returns, ROLLBACK
    when it raises."""
    db.execute(begin)
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may have ended it already (disk full, I/O error)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
