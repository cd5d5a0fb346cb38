"""A throwaway PostgreSQL server for the tests (a pytest plugin: `pytest_plugins = ["tests.pg"]`).

`postgres_server` (session) starts one when the server binaries exist (`pg_ctl` on PATH or
under /usr/lib/postgresql/*/bin) on a free loopback port, or uses the server named by
POSTWRIGHT_TEST_DATABASE_URL; without either the tests skip, saying why, unless
POSTWRIGHT_REQUIRE_POSTGRES=1 makes that a failure. `postgres_url` (per test) is a fresh
database on it, dropped afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

URL_VARIABLE = "POSTWRIGHT_TEST_DATABASE_URL"
REQUIRE_VARIABLE = "POSTWRIGHT_REQUIRE_POSTGRES"
USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on; `url` names its maintenance database."""

    url: str

    def database_url(self, name: str) -> str:
        """The URL of database `name` on this server."""
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"pw_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        """Remove a database made by `create_database`, closing its leftover connections."""
        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def find_binaries() -> Path | None:
    """The folder holding pg_ctl and initdb, or None when the server is not installed."""
    found = shutil.which("pg_ctl")
    if found is not None and shutil.which("initdb", path=str(Path(found).parent)):
        return Path(found).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")],
    )
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"PostgreSQL is required ({REQUIRE_VARIABLE}=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}; set {URL_VARIABLE} to use a server")


def _tool(binaries: Path, name: str, *args: str, check: bool = True) -> None:
    # initdb and postgres refuse to run as root; CI runs as root.
    command = [str(binaries / name), *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", USER, "--", *command]
    subprocess.run(command, check=check, capture_output=True, timeout=60)


def start_local_server(binaries: Path) -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a fresh folder under /tmp (outside pytest's tmp tree, which
    the server user cannot enter); stopped at once and removed afterwards."""
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _unavailable("running as root needs `runuser` to start the server as postgres")
    base = Path(tempfile.mkdtemp(prefix="postwright-pg-"))
    data, log = base / "data", base / "server.log"
    if os.geteuid() == 0:
        shutil.chown(base, USER, USER)
    base.chmod(0o700)
    port = free_port()
    options = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    started = False
    try:
        _tool(
            binaries,
            "initdb",
            "-D",
            str(data),
            "-U",
            USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        )
        _tool(binaries, "pg_ctl", "start", "-w", "-D", str(data), "-l", str(log), "-o", options)
        started = True
        yield PostgresServer(f"postgresql://{USER}@127.0.0.1:{port}/postgres")
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or b"").decode(errors="replace").strip()
        if log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"could not start PostgreSQL: {error}: {detail}") from None
    finally:
        if started:
            _tool(binaries, "pg_ctl", "stop", "-D", str(data), "-m", "immediate", check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The server of this test session (see the module docstring)."""
    external = os.environ.get(URL_VARIABLE)
    if external:
        yield PostgresServer(external)
        return
    binaries = find_binaries()
    if binaries is None:
        _unavailable("pg_ctl was found neither on PATH nor under /usr/lib/postgresql/*/bin")
        return
    yield from start_local_server(binaries)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)
