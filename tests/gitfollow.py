"""`postwright serve --git` driven as an operator would, for the tests and the benchmark: an
upstream work clone that pushes to a bare repository, and serve processes following it.

Every wait polls with a bound; every process is stopped when its `with` block ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.gitrepo import GitRepo
from tests.pg import free_port

ROOT = Path(__file__).resolve().parents[1]
POSTWRIGHT = ROOT / ".venv" / "bin" / "postwright"
START_WAIT = 30.0  # seconds for `serve` to answer /readyz
POLL = 0.01
T = TypeVar("T")


def automation(ident: str, status: str = "running", subject: str = "Hello") -> str:
    """An event-triggered automation file."""
    return (
        f"id: {ident}\nstatus: {status}\ntrigger:\n  type: event\n  event: signup\n"
        f'email:\n  from: "Shop <news@shop.test>"\n  subject: {subject}\n  text: Hello\n'
    )


class Upstream(GitRepo):
    """A developer's clone of the followed bare repository: commit, push, force-push."""

    def __init__(self, path: Path, bare: Path) -> None:
        super().__init__(path)
        self.git("remote", "add", "origin", str(bare))

    def save(self, ident: str, text: str, message: str) -> str:
        """Write one automation file and commit it; the commit's sha."""
        self.write(f"automations/{ident}.yaml", text)
        return self.commit(message)

    def push(self, *, force: bool = False, ref: str = "main") -> None:
        """Push HEAD to `ref` of the bare repository."""
        self.git("push", "-q", *(["--force"] if force else []), "origin", f"HEAD:{ref}")


@dataclass
class Serve:
    """One `postwright serve --git` process and a client for it."""

    process: subprocess.Popen[bytes]
    http: httpx.Client
    log: Path

    def get(self, path: str) -> Any:
        """GET a JSON document (any status)."""
        return self.http.get(path).json()

    def automation(self, ident: str) -> dict[str, Any] | None:
        """GET /v1/automations/{id}, None when not applied."""
        answer = self.http.get(f"/v1/automations/{ident}")
        return answer.json() if answer.status_code == 200 else None

    def subject(self, ident: str) -> str | None:
        """The subject of the applied version of `ident`."""
        detail = self.automation(ident)
        if detail is None:
            return None
        found = re.search(r"^  subject: (.*)$", detail["source"], re.MULTILINE)
        return found.group(1) if found else None

    def git_state(self) -> dict[str, Any]:
        """The `git` detail of /readyz."""
        state: dict[str, Any] = self.get("/readyz")["remote"]
        return state

    def applied(self, commit: str) -> bool:
        """Whether this replica has seen `commit` applied."""
        return self.git_state().get("applied_commit") == commit

    def output(self) -> str:
        """What the process wrote to stdout and stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


def serve_command(url: str, data: Path, port: int, *flags: str) -> list[str]:
    """The command line of `serve --git`."""
    command = [str(POSTWRIGHT), "serve", "--git", url, "--data", str(data)]
    return [*command, "--port", str(port), *flags]


@contextmanager
def serve_git(
    url: str,
    data: Path,
    *flags: str,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Serve]:
    """`postwright serve --git URL --data DATA` on a free port, once /readyz answers 200."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTWRIGHT_")}
    env.update(environ or {})
    data.mkdir(parents=True, exist_ok=True)
    log = data.parent / f"{data.name}-serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            serve_command(url, data, port, *flags), env=env, stdout=output, stderr=output
        )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
    server = Serve(process, http, log)
    try:

        def ready() -> bool:
            assert process.poll() is None, server.output()
            try:
                return http.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, "serve ready", START_WAIT)
        yield server
    finally:
        http.close()
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_for(probe: Callable[[], T | None], what: str, bound: float) -> tuple[T, float]:
    """Poll `probe` until it returns a value; that value and the seconds it took."""
    started = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - started
        if value is not None and value is not False:
            return value, elapsed
        assert elapsed < bound, f"{what}: not seen within {bound} s"
        time.sleep(POLL)  # another process is working


def run_once(command: Sequence[str], environ: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """Run a command to its end; its exit code and output."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTWRIGHT_")}
    done = subprocess.run(
        command, env={**env, **environ}, capture_output=True, timeout=timeout, check=False
    )
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def metric(text: str, name: str) -> float | None:
    """The value of one sample in Prometheus text."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None
