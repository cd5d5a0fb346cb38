"""`postwright serve --git` driven as an operator would, for the tests and the benchmark: an
upstream work clone that pushes to a bare repository, and serve processes following it.

Every wait polls with a bound; every process is stopped when its `with` block ends.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.gitrepo import GitRepo
from tests.serving import POSTWRIGHT, clean_environ, serve


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
    """The command line of `serve --git` (for runs that end by themselves)."""
    command = [POSTWRIGHT, "serve", "--git", url, "--data", str(data)]
    return [*command, "--port", str(port), *flags]


@contextmanager
def serve_git(
    url: str,
    data: Path,
    *flags: str,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Serve]:
    """`postwright serve --git URL --data DATA` on a free port, once /readyz answers 200."""
    data.mkdir(parents=True, exist_ok=True)
    log = data.parent / f"{data.name}-serve.log"
    args = ["--git", url, "--data", str(data), *flags]
    with (
        serve(args, log, environ=environ) as served,
        httpx.Client(base_url=served.url, timeout=10.0) as http,
    ):
        yield Serve(served.process, http, log)


def run_once(command: Sequence[str], environ: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """Run a command to its end; its exit code and output."""
    done = subprocess.run(
        command, env=clean_environ(environ), capture_output=True, timeout=timeout, check=False
    )
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")
