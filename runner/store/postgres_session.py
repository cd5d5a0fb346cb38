"""How a replica's PostgreSQL sessions are set up and bounded (docs/scaling.md "A frozen
replica"), and which errors mean that the database, not the work, failed.

A replica stopped (SIGSTOP, a long GC pause) or cut off while it holds a lock would hold it
for as long as it stays away; the server ends such a session after
`idle_in_transaction_session_timeout`, which rolls its transaction back and frees its locks,
and `lock_timeout` / `statement_timeout` bound what the others wait for. TCP keepalives let a
replica notice a connection that died under it instead of waiting on it forever.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, TypeGuard

import psycopg
from psycopg.conninfo import conninfo_to_dict

from runner.core.store_options import StoreOptions
from runner.store.errors import StoreError, StoreUnavailable

# libpq parameters a connection URL may set itself; these apply where it does not.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,  # seconds of silence before the first probe
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
_NAME_LENGTH = 63  # PostgreSQL truncates application names longer than this


def connection_kwargs(conninfo: str) -> dict[str, Any]:
    """Connection parameters for `conninfo`: autocommit (the store issues BEGIN itself),
    keepalives, and an application name naming this process, so that `pg_stat_activity`
    and `pg_locks` show which replica holds what; the URL's own values win."""
    given = conninfo_to_dict(conninfo)
    name = f"postwright pid {os.getpid()} {socket.gethostname()}"[:_NAME_LENGTH]
    defaults: dict[str, Any] = {**_KEEPALIVES, "fallback_application_name": name}
    return {"autocommit": True} | {k: v for k, v in defaults.items() if k not in given}


def session_setup(options: StoreOptions) -> Callable[[psycopg.Connection[Any]], None]:
    """What every new connection runs first: UTC, and the session timeouts of `options`
    (a timeout of 0 sets no bound)."""
    values = (
        str(options.lock_timeout * 1000),
        str(options.statement_timeout * 1000),
        str(options.idle_in_transaction_timeout * 1000),
    )

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SELECT set_config('TimeZone', 'UTC', false),"
            " set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false)",
            values,
        )

    return configure


def is_server_fault(error: BaseException) -> TypeGuard[psycopg.Error]:
    """Whether `error` says the database or the connection failed (a timeout, a lock wait
    given up, a deadlock, the session ended by the server, the network), not the work."""
    return isinstance(
        error, psycopg.OperationalError | psycopg.errors.IdleInTransactionSessionTimeout
    )


def unavailable(error: psycopg.Error) -> StoreUnavailable:
    """A server fault met while running: the transaction was rolled back; retry later."""
    failure = StoreUnavailable(f"the PostgreSQL database failed: {_first_line(error)}")
    failure.__cause__ = error
    return failure


def startup_error(error: psycopg.Error) -> StoreError:
    """Why the runner cannot start on this database, in one line (no password: libpq never
    puts it in a message)."""
    return StoreError(
        f"cannot use the PostgreSQL database ({_first_line(error)}): check "
        "POSTWRIGHT_DATABASE_URL and that the server is up and reachable"
    )


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
