"""`postwright serve` as a separate process for the reliability tests: started in its own
process group on a free loopback port, killed with SIGKILL on demand, its memory read from
/proc, and never left behind.

`served(...)` is the context manager; when the block ends, whatever is left of the process
group (the server, its render workers) is killed and reaped, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from runner.cli.clocks import FAKE_CLOCK_VARIABLE
from tests.serving import serve

WAIT = 30.0  # seconds: the bound of every wait on the server process


class Served:
    """One running `postwright serve` and where to reach it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.pid = process.pid
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def kill(self) -> None:
        """SIGKILL the server process alone (its render workers must end by themselves)."""
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(WAIT) == -signal.SIGKILL

    def stop(self) -> None:
        """End the server the way an operator does (SIGTERM); it must shut down cleanly
        (uvicorn ends by raising the signal again once it has shut down)."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(WAIT) in (0, -signal.SIGTERM), self.log_tail()
        assert "Application shutdown complete" in self.log_tail(500), self.log_tail()

    def rss_bytes(self) -> int:
        """Resident memory of the server process now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def group_alive(self) -> list[int]:
        """Live processes (not zombies) of the server's process group."""
        return live_group_members(self.pid)

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the server's log, for failure messages."""
        return self.log.read_text(errors="replace")[-chars:]


def live_group_members(group: int) -> list[int]:
    """Pids in process group `group` that are running (zombies wait for a reaper only)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def wait_until(
    check: Callable[[], bool], message: str | Callable[[], str], seconds: float = WAIT
) -> None:
    """Poll `check()` until it is true; fail with `message` (or what it returns) after
    `seconds`."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() >= deadline:
            raise AssertionError(message if isinstance(message, str) else message())
        time.sleep(0.02)  # polling another process's state, not waiting for fake time


@contextlib.contextmanager
def served(
    repo: Path,
    log: Path,
    environ: Mapping[str, str] | None = None,
    clock: Path | None = None,
) -> Iterator[Served]:
    """`postwright serve --repo repo` with `environ` added to a clean environment (no
    POSTWRIGHT_ variables of the caller's) and the FileClock `clock` when given."""
    variables = dict(environ or {})
    if clock is not None:
        variables[FAKE_CLOCK_VARIABLE] = str(clock)
    with serve(
        ["--repo", str(repo)],
        log,
        environ=variables,
        ready="/healthz",
        wait=WAIT,
        graceful=False,
        own_group=True,
    ) as server:
        yield Served(server.process, server.port, log)
