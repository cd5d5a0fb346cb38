"""The one door for files on disk: hostile symlinks and special files are refused, fast."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from runner.repo.files import MAX_FILE_BYTES, Refused, is_present, read_repo_file, walk_directory
from runner.repo.snapshot import DirectorySnapshot, git_blob_id

T = TypeVar("T")
FAST = 2.0  # seconds: every refusal is immediate; this only bounds a test that would hang


def bounded(work: Callable[[], T]) -> T:
    """Run `work` in a thread and fail (instead of hanging) if it takes longer than FAST."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(FAST)
    assert not thread.is_alive(), "the read hung"
    assert time.monotonic() - started < FAST
    return result[0]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "real.html").write_text("<p>real</p>", encoding="utf-8")
    return root


def refusal(root: Path, path: str) -> Refused:
    found = bounded(lambda: read_repo_file(root, path))
    assert isinstance(found, Refused), found
    return found


def test_a_regular_file_is_read(repo: Path) -> None:
    assert read_repo_file(repo, "templates/real.html") == b"<p>real</p>"
    assert read_repo_file(repo, "templates/absent.html") is None


def test_symlink_to_the_process_environment_is_refused(repo: Path) -> None:
    (repo / "templates" / "env.txt").symlink_to("/proc/self/environ")
    found = refusal(repo, "templates/env.txt")
    assert found.rule == "file-outside-repo"
    assert found.message.startswith("`templates/env.txt` resolves to `/proc/")
    assert found.message.endswith("environ`, outside the repository")


def test_symlink_to_dev_zero_is_refused_without_reading(repo: Path) -> None:
    (repo / "templates" / "zero.html").symlink_to("/dev/zero")
    assert refusal(repo, "templates/zero.html").rule == "file-outside-repo"


def test_device_inside_the_repository_is_refused_on_stat(repo: Path) -> None:
    # A device cannot be created without privileges; a repository rooted at /dev holds one.
    found = refusal(Path("/dev"), "zero")
    assert (found.rule, found.message) == (
        "file-not-regular",
        "`zero` is a device, not a regular file",
    )


def test_symlink_to_a_file_outside_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("api key", encoding="utf-8")
    (repo / "templates" / "secret.html").symlink_to(secret)
    (repo / "templates" / "relative.html").symlink_to("../../secret.txt")
    assert refusal(repo, "templates/secret.html").rule == "file-outside-repo"
    assert refusal(repo, "templates/relative.html").rule == "file-outside-repo"


def test_symlinked_folder_leaving_the_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.html").write_text("x", encoding="utf-8")
    (repo / "shared").symlink_to(outside)
    assert refusal(repo, "shared/a.html").rule == "file-outside-repo"


def test_private_folders_are_refused_even_inside(repo: Path) -> None:
    (repo / ".postwright").mkdir()
    (repo / ".postwright" / "postwright.db").write_bytes(b"SQLite format 3\0")
    (repo / "templates" / "db.html").symlink_to("../.postwright/postwright.db")
    found = refusal(repo, "templates/db.html")
    assert found.rule == "file-outside-repo" and ".postwright/" in found.message
    assert refusal(repo, ".postwright/postwright.db").rule == "file-outside-repo"
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("url = https://token@host/x", encoding="utf-8")
    assert refusal(repo, "templates/../.git/config").rule == "file-outside-repo"


def test_a_fifo_never_hangs(repo: Path) -> None:
    os.mkfifo(repo / "templates" / "pipe.html")
    found = refusal(repo, "templates/pipe.html")
    assert (found.rule, found.message) == (
        "file-not-regular",
        "`templates/pipe.html` is a FIFO (named pipe), not a regular file",
    )
    (repo / "templates" / "to-pipe.html").symlink_to("pipe.html")
    assert refusal(repo, "templates/to-pipe.html").rule == "file-not-regular"


def test_a_socket_and_a_folder_are_not_regular_files(repo: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(repo / "templates" / "sock.html"))
        assert "a socket" in refusal(repo, "templates/sock.html").message
    (repo / "templates" / "folder.html").mkdir()
    assert "a folder" in refusal(repo, "templates/folder.html").message


def test_oversized_file_is_refused_at_the_cap(repo: Path) -> None:
    (repo / "templates" / "big.html").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    (repo / "templates" / "max.html").write_bytes(b"x" * MAX_FILE_BYTES)
    assert refusal(repo, "templates/big.html").rule == "file-too-large"
    assert read_repo_file(repo, "templates/max.html") == b"x" * MAX_FILE_BYTES


def test_symlink_inside_the_repository_is_followed(repo: Path) -> None:
    (repo / "templates" / "alias.html").symlink_to("real.html")
    (repo / "other").symlink_to("templates")
    assert read_repo_file(repo, "templates/alias.html") == b"<p>real</p>"
    assert read_repo_file(repo, "other/real.html") == b"<p>real</p>"


def test_dangling_symlink_inside_is_absent(repo: Path) -> None:
    (repo / "templates" / "gone.html").symlink_to("nothing.html")
    assert read_repo_file(repo, "templates/gone.html") is None


def test_unreadable_file_is_a_refusal(repo: Path) -> None:
    locked = repo / "templates" / "locked.html"
    locked.write_text("x", encoding="utf-8")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user who reads any file (root)")
        assert refusal(repo, "templates/locked.html").rule == "file-unreadable"
    finally:
        locked.chmod(0o644)


def test_listing_shows_symlinks_and_special_files_but_enters_no_linked_folder(
    repo: Path, tmp_path: Path
) -> None:
    folder = repo / "automations"
    folder.mkdir()
    (folder / "a.yaml").write_text("x", encoding="utf-8")
    (folder / "env.yaml").symlink_to("/proc/self/environ")
    os.mkfifo(folder / "pipe.yaml")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "b.yaml").write_text("x", encoding="utf-8")
    (folder / "linked").symlink_to(outside)
    assert sorted(walk_directory(repo, ["automations"])) == [
        "automations/a.yaml",
        "automations/env.yaml",
        "automations/linked",
        "automations/pipe.yaml",
    ]
    assert is_present(repo, "automations/pipe.yaml") and is_present(repo, "automations/env.yaml")
    assert not is_present(repo, "automations") and not is_present(repo, "automations/x.yaml")


def test_directory_snapshot_gives_a_refused_file_an_id_and_no_bytes(repo: Path) -> None:
    (repo / "templates" / "env.txt").symlink_to("/proc/self/environ")
    snapshot = DirectorySnapshot(repo, ["templates/env.txt", "templates/real.html"])
    refused = snapshot.refusal("templates/env.txt")
    assert refused is not None and refused.rule == "file-outside-repo"
    assert snapshot.read("templates/env.txt") is None
    assert snapshot.blob_id("templates/env.txt") == refused.id
    assert snapshot.blob_id("templates/real.html") == git_blob_id(b"<p>real</p>")
    assert snapshot.refusal("templates/real.html") is None
