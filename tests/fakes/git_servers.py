"""Real Git remotes on 127.0.0.1 for `serve --git` tests: `git daemon` (git://, no auth) and
`git http-backend` behind HTTP basic auth (a small threaded HTTP server running the CGI).

Both serve bare repositories under one base folder and are stopped when their `with` block
ends; every wait is bounded.
"""

from __future__ import annotations

import base64
import hmac
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.gitrepo import _ENV
from tests.pg import free_port

START_WAIT = 10.0  # seconds for a server to accept connections
CGI_WAIT = 30.0  # seconds for one `git http-backend` run
_HEAD_END = re.compile(rb"\r?\n\r?\n")  # CGI headers end at an empty line


@contextmanager
def git_daemon(base: Path, port: int | None = None) -> Iterator[str]:
    """`git daemon` exporting every repository under `base`; yields `git://127.0.0.1:PORT`."""
    port = port or free_port()
    command = [
        "git",
        "daemon",
        "--reuseaddr",
        "--export-all",
        "--listen=127.0.0.1",
        f"--port={port}",
        f"--base-path={base}",
        str(base),
    ]
    process = subprocess.Popen(
        command, env=_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_port(port, process)
        yield f"git://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class GitHttp:
    """`git http-backend` over HTTP with basic auth; `password` may be changed at any time."""

    def __init__(self, base: Path, username: str, password: str) -> None:
        self.base = base
        self.username = username
        self.password = password
        self.requests = 0
        self.refused = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GitHttp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def allowed(self, header: str | None) -> bool:
        """Whether an Authorization header carries the current credentials."""
        wanted = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header is not None and hmac.compare_digest(header, f"Basic {wanted}")


def _handler(backend: GitHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            backend.requests += 1
            if not backend.allowed(self.headers.get("Authorization")):
                backend.refused += 1
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            environ = {
                **_ENV,
                "GIT_PROJECT_ROOT": str(backend.base),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": backend.username,
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            done = subprocess.run(
                ["git", "http-backend"],
                input=body,
                env=environ,
                capture_output=True,
                timeout=CGI_WAIT,
                check=False,
            )
            head, content = _HEAD_END.split(done.stdout, maxsplit=1)
            status = 200
            headers: list[tuple[str, str]] = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

    return Handler


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        assert process.poll() is None, "the git server exited"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)  # waiting for another process to listen
    raise AssertionError(f"nothing listens on port {port} after {START_WAIT} s")


def bare_repository(base: Path, name: str = "automations.git") -> Path:
    """An empty bare repository under `base` on branch main."""
    path = base / name
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], env=_ENV, check=True)
    return path
