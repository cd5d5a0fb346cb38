"""A real `postwright serve` subprocess for the tests and the benchmarks: started on a free
loopback port with a clean environment, waited for until it answers, and always stopped.

It imports nothing of `runner`, so a benchmark run as `.venv/bin/python benchmarks/X.py`
(with the checkout's root on sys.path) can use it as the tests do.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from tests.pg import free_port

POSTWRIGHT = str(Path(sys.executable).parent / "postwright")
START_WAIT = 30.0  # seconds for `serve` to answer its readiness probe
STOP_WAIT = 5.0  # seconds for SIGTERM before SIGKILL
POLL = 0.01  # seconds between two looks at another process's state
T = TypeVar("T")


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its POSTWRIGHT_ variables, then `extra`."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("POSTWRIGHT_")}
    return environ | dict(extra or {})


def wait_for(probe: Callable[[], T | None], what: str, bound: float) -> tuple[T, float]:
    """Poll `probe` until it returns a value (not None, not False); that value and the
    seconds it took. Fails after `bound` seconds."""
    started = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - started
        if value is not None and value is not False:
            return value, elapsed
        if elapsed >= bound:
            raise AssertionError(f"{what}: not seen within {bound} s")
        time.sleep(POLL)  # another process is working


@dataclass
class Serving:
    """One running `postwright serve` process and where to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        """The base URL on loopback."""
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """What the process wrote to stdout and stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> None:
        """Fail when the process has ended."""
        assert self.process.poll() is None, f"serve exited with {self.process.returncode}"


@contextlib.contextmanager
def serve(
    args: Sequence[str],
    log: Path,
    *,
    environ: Mapping[str, str] | None = None,
    ready: str = "/readyz",
    wait: float = START_WAIT,
    graceful: bool = True,
    own_group: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Serving]:
    """`postwright serve ARGS --port PORT` on a free port, its output appended to `log`,
    `environ` added to a clean environment; yields once GET `ready` answers 200.

    When the block ends the process is stopped: SIGTERM then SIGKILL after a bound
    (`graceful`), or SIGKILL at once; with `own_group` it runs in its own process group
    and whatever is left of the group (render workers) is killed too."""
    port = free_port()
    command = [POSTWRIGHT, "serve", *args, "--port", str(port)]
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            env=clean_environ(environ),
            stdout=output,
            stderr=output,
            start_new_session=own_group,
            preexec_fn=preexec_fn,
        )
    served = Serving(process, port, log)
    try:

        def answers() -> bool:
            served.alive()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{served.url}{ready}", timeout=1.0).status_code == 200
            return False

        try:
            wait_for(answers, f"serve answering {ready}", wait)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{served.output()[-3000:]}") from None
        yield served
    finally:
        stop(process, graceful=graceful)
        if own_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def stop(process: subprocess.Popen[bytes], *, graceful: bool = True) -> None:
    """End `process` and reap it: SIGTERM, then SIGKILL after a bound (or SIGKILL at once)."""
    if process.poll() is None and graceful:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_WAIT)
    if process.poll() is None:
        process.kill()
    process.wait(STOP_WAIT)


def metric(text: str, name: str) -> float | None:
    """The value of one sample in Prometheus text."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None
