"""Connection limits of a real `postwright serve` over raw sockets: half-sent requests, slow
headers, never-ending bodies, oversized headers, the open-file limit and the connection cap.

Each server runs as a subprocess with its own open-file limit; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests import serving
from tests.harness import WELCOME, write_repo
from tests.serving import Serving

HALF_SENT = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-"


class Served(Serving):
    """A running `postwright serve` and where to reach it."""

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def open_files_limit(self) -> int:
        limits = Path(f"/proc/{self.process.pid}/limits").read_text()
        found = re.search(r"Max open files\s+(\d+)", limits)
        assert found is not None
        return int(found.group(1))


@contextlib.contextmanager
def serve(
    tmp_path: Path, environ: Mapping[str, str], open_files: tuple[int, int] | None = None
) -> Iterator[Served]:
    """`postwright serve` on a fresh repository, started with `open_files` (soft, hard)."""
    repo = write_repo(tmp_path / "repo", {"welcome": WELCOME})

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    args = ["--repo", str(repo)]
    log = tmp_path / "serve.log"
    with serving.serve(args, log, environ=environ, preexec_fn=limit) as served:
        yield Served(served.process, served.port, served.log)


def read_until_closed(sock: socket.socket, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    sock.settimeout(seconds)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def well_behaved(served: Served) -> None:
    """A normal client gets its answers at once, however many others hang."""
    with httpx.Client(base_url=served.url, timeout=5) as client:
        assert client.get("/healthz").status_code == 200
        event = {
            "id": f"ok-{time.monotonic()}",
            "type": "signup",
            "subscriber": {"email": "a@b.co"},
        }
        assert client.post("/v1/events", json=event).status_code == 202


def half_sent(served: Served, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = served.connect()
        sock.sendall(HALF_SENT)
        sockets.append(sock)
    return sockets


def test_half_sent_requests_do_not_lock_out_a_client(tmp_path: Path) -> None:
    # 300 half-sent requests once exhausted a soft limit of 256 open files: start-up now
    # raises it to the hard limit, and the default timeouts have not fired yet.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room to raise")
    with serve(tmp_path, {}, open_files=(256, hard)) as served:
        assert served.open_files_limit() > 256
        sockets = half_sent(served, 300)
        try:
            started = time.monotonic()
            well_behaved(served)
            assert time.monotonic() - started < 5
        finally:
            for sock in sockets:
                sock.close()


def test_the_connection_cap_closes_the_longest_waiting(tmp_path: Path) -> None:
    # A hard limit of 256 cannot be raised: the cap (256 - 128 reserved) bounds connections,
    # and a newcomer takes the place of the connection that has waited longest.
    with serve(tmp_path, {}, open_files=(256, 256)) as served:
        assert served.open_files_limit() == 256
        sockets = half_sent(served, 300)
        try:
            well_behaved(served)
            oldest = sockets[0]
            assert read_until_closed(oldest, 5) == b""  # closed by the server
            assert served.process.poll() is None
        finally:
            for sock in sockets:
                sock.close()
    assert "connection cap reached" in served.log.read_text()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A runner whose clients get one second for their headers and one for their body."""
    environ = {"POSTWRIGHT_HTTP_HEADER_TIMEOUT": "1s", "POSTWRIGHT_HTTP_BODY_TIMEOUT": "1s"}
    with serve(tmp_path_factory.mktemp("quick"), environ) as served:
        yield served


def test_slow_headers_are_cut_after_the_header_timeout(quick: Served) -> None:
    with quick.connect() as silent, quick.connect() as slow:
        slow.sendall(HALF_SENT)
        started = time.monotonic()
        answer = read_until_closed(slow, 10)
        assert 0.8 < time.monotonic() - started < 5
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert read_until_closed(silent, 10).startswith(b"HTTP/1.1 408 ")
    # A keep-alive connection gets the same time for its next request's headers.
    with quick.connect() as kept:
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += kept.recv(4096)
        assert first.startswith(b"HTTP/1.1 200 ")
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert read_until_closed(kept, 10).startswith(b"HTTP/1.1 408 ")
    well_behaved(quick)


def test_a_never_ending_chunked_body_is_cut_off(quick: Served) -> None:
    def ingested() -> str:
        metrics = httpx.get(f"{quick.url}/metrics", timeout=5).text
        found = re.search(r"^postwright_events_ingested_total (\S+)$", metrics, re.M)
        assert found is not None
        return found.group(1)

    before = ingested()
    with quick.connect() as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
        )
        started = time.monotonic()
        cut = False
        while time.monotonic() - started < 10:  # a chunk every 0.1 s, for ever
            try:
                sock.sendall(b"1\r\n \r\n")
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
            sock.settimeout(0.1)
            try:
                if sock.recv(4096, socket.MSG_PEEK):
                    cut = True
                    break
            except TimeoutError:
                continue
        elapsed = time.monotonic() - started
    assert cut and 0.8 < elapsed < 5
    assert ingested() == before
    well_behaved(quick)


def test_oversized_headers_are_431(quick: Served) -> None:
    with quick.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for n in range(200):
                sock.sendall(f"X-Padding-{n}: {'x' * 1000}\r\n".encode())
        assert read_until_closed(sock, 10).startswith(b"HTTP/1.1 431 ")
