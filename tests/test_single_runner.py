"""SQLite serves one runner: a second `postwright serve` on the same file is refused
(docs/scaling.md), whatever path names the file (the lock is on the file itself)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.pg import free_port
from tests.serving import POSTWRIGHT, clean_environ, serve


@contextmanager
def serving(repo: Path) -> Iterator[None]:
    """A `postwright serve` on `repo` (its default SQLite file), once ready."""
    (repo / "automations").mkdir(exist_ok=True)
    with serve(["--repo", str(repo)], repo.parent / f"{repo.name}-serve.log"):
        yield


def second(command: str, repo: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    """Run another command on `repo` to its end (a serve that is not refused would not end)."""
    port = ["--port", str(free_port())] if command == "serve" else []
    return subprocess.run(
        [POSTWRIGHT, command, "--repo", str(repo), *port],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_environ(environ),
    )


def test_a_second_runner_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    with serving(tmp_path):
        refused = second("serve", tmp_path)
        assert refused.returncode == 2
        assert "another `postwright serve` is already running" in refused.stderr
        assert "postgresql://" in refused.stderr
        # Short commands still read the same file while the runner serves.
        assert second("outbox", tmp_path).returncode == 0


def test_the_lock_holds_whatever_path_names_the_file(tmp_path: Path) -> None:
    repo, other = tmp_path / "repo", tmp_path / "other"
    repo.mkdir()
    (other / "automations").mkdir(parents=True)
    real = repo / ".postwright" / "postwright.db"
    with serving(repo):
        (other / "link.db").symlink_to(real)
        os.link(real, other / "hard.db")
        (other / ".postwright").symlink_to(real.parent)  # the default path, through a link
        for name in ("link.db", "hard.db"):
            url = f"sqlite:///{other / name}"
            refused = second("serve", other, POSTWRIGHT_DATABASE_URL=url)
            assert refused.returncode == 2, (name, refused.stderr)
            assert refused.stderr.strip().splitlines() == [
                "postwright: error: another `postwright serve` is already running on "
                f"{(other / name).resolve()}: "
                "SQLite serves one runner; for several replicas set "
                "POSTWRIGHT_DATABASE_URL=postgresql://..."
            ]
        refused = second("serve", other)
        assert refused.returncode == 2
        assert "already running" in refused.stderr
        # Short commands work through any of the names while the runner serves.
        url = f"sqlite:///{other / 'link.db'}"
        assert second("stats", other, POSTWRIGHT_DATABASE_URL=url).returncode == 0
