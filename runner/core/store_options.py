"""How a store is opened: the start-up check of a SQLite file and the bounds PostgreSQL puts on
every session (docs/scaling.md "A frozen replica"). Plain values; settings fill them in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreOptions:
    """Options of `open_store`; the defaults are the runner's."""

    # SQLite: `PRAGMA quick_check` before serving (it reads the whole file once).
    integrity_check: bool = True
    # PostgreSQL, seconds. A wait for a lock (an advisory lock, a row) fails past this.
    lock_timeout: int = 10
    # PostgreSQL, seconds. One statement runs at most this long (migrations are exempt).
    statement_timeout: int = 60
    # PostgreSQL, seconds. The server ends a session that stays this long inside a
    # transaction without running a statement (a stopped or cut-off replica), which releases
    # its locks; kept below `lock_timeout` so the others' waits outlast it.
    idle_in_transaction_timeout: int = 5


DEFAULT_OPTIONS = StoreOptions()
