"""`postwright serve` on a SQLite file that cannot serve exits 2 with one line naming the file
and what to do, never a traceback (issue 10, defect 7): damaged pages, a damaged header, a
truncated file, a read-only folder or file, a lock held by another process, a full disk, a
database migrated by a newer release. Real files, real processes."""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from runner.core.clock import FakeClock
from runner.store import open_store
from tests.harness import START
from tests.pg import free_port
from tests.serving import POSTWRIGHT, clean_environ

PAGE = 4096  # SQLite's default page size, the one the store's files use
RUN_WAIT = 40.0  # seconds for a refused start (a lock is waited for 10 s first)


def make_database(repo: Path) -> Path:
    """The runner's default database under `repo`, created and migrated."""
    (repo / "automations").mkdir(parents=True, exist_ok=True)
    path = repo / ".postwright" / "postwright.db"

    async def create() -> None:
        store = open_store(f"sqlite:///{path}", FakeClock(START))
        await store.close()

    asyncio.run(create())
    return path


def serve(
    repo: Path, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `postwright serve` on `repo` until it exits (a healthy one would not)."""
    return subprocess.run(
        [POSTWRIGHT, "serve", "--repo", str(repo), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=RUN_WAIT,
        env=clean_environ(),
        preexec_fn=preexec,
    )


def refused(result: subprocess.CompletedProcess[str], path: Path) -> str:
    """The one error line of a start refused with exit 2; it names the database file."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert line.startswith("postwright: error: "), line
    assert str(path) in line
    return line


def overwrite(path: Path, offset: int, size: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(random.Random(offset).randbytes(size))


def test_random_bytes_in_pages_3_to_10_are_found_at_start_up(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    assert path.stat().st_size >= 10 * PAGE
    overwrite(path, 2 * PAGE, 8 * PAGE)
    line = refused(serve(tmp_path), path)
    assert "is damaged (Page " in line  # quick_check's own words
    assert "restore the file from a backup" in line and ".recover" in line


def test_a_damaged_header_is_refused(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    overwrite(path, 0, 100)
    line = refused(serve(tmp_path), path)
    assert "is damaged (file is not a database)" in line


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    os.truncate(path, path.stat().st_size // 2)
    line = refused(serve(tmp_path), path)
    assert "is damaged" in line and "backup" in line


def _drop_root_override() -> None:
    """In the child: as root, give up the right to write where permissions say no."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Take write permission away from `paths` for the block."""
    modes = [path.stat().st_mode for path in paths]
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in zip(paths, modes, strict=True):
            path.chmod(mode)


@pytest.mark.parametrize("existing", [True, False], ids=["existing-file", "new-file"])
def test_a_read_only_folder_is_refused(tmp_path: Path, existing: bool) -> None:
    path = make_database(tmp_path)
    if not existing:
        path.unlink()
    with read_only(path.parent):
        line = refused(serve(tmp_path, _drop_root_override), path)
    assert "cannot write" in line and "fix the permissions" in line
    assert not path.with_name(path.name + "-wal").exists()


def test_a_read_only_file_is_refused(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    with read_only(path):
        line = refused(serve(tmp_path, _drop_root_override), path)
    assert "cannot write" in line and "attempt to write a readonly database" in line


_HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_file_locked_by_another_process_is_refused(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        line = refused(serve(tmp_path), path)
    finally:
        holder.communicate(timeout=RUN_WAIT)  # closing its stdin ends it
    assert "is locked by another process" in line


def test_a_full_disk_is_refused(tmp_path: Path) -> None:
    (tmp_path / "automations").mkdir()
    folder = tmp_path / ".postwright"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tiny file system needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tiny file system here: {mounted.stderr!r}")
    try:
        line = refused(serve(tmp_path), folder / "postwright.db")
    finally:
        subprocess.run(["umount", str(folder)], check=True, timeout=RUN_WAIT)
    assert "no space left" in line and "free disk space" in line


def test_a_database_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = make_database(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (9999, '9999_future', 'now')")
    line = refused(serve(tmp_path), path)
    assert "migrated by a newer Postwright (schema version 9999 is unknown" in line
