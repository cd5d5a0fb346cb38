"""SQLite serves one runner: a second `postwright serve` on the same file is refused (SPEC 8)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

POSTWRIGHT = str(Path(sys.executable).parent / "postwright")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_a_second_runner_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "automations").mkdir()
    first_port, second_port = free_port(), free_port()
    first = subprocess.Popen(
        [POSTWRIGHT, "serve", "--repo", str(tmp_path), "--port", str(first_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{first_port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the first runner did not become ready"
            time.sleep(0.05)
        second = subprocess.run(
            [POSTWRIGHT, "serve", "--repo", str(tmp_path), "--port", str(second_port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "another `postwright serve` is already running" in second.stderr
        assert "postgresql://" in second.stderr
        # Short commands still read the same file while the runner serves.
        stats = subprocess.run(
            [POSTWRIGHT, "outbox", "--repo", str(tmp_path)], capture_output=True, timeout=30
        )
        assert stats.returncode == 0
    finally:
        first.terminate()
        try:
            first.wait(timeout=15)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
