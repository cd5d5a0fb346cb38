"""Local stand-ins for provider APIs: real HTTP servers on 127.0.0.1, for contract tests.

`serve(app)` runs any ASGI app under uvicorn in a background thread on a free port and
stops it when the `with` block ends; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT = 10.0  # seconds to start or stop a server before the test fails
MAX_DELAY = 5.0  # a fake's "slow response" never waits longer than this


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:<free port>; yields its base URL (`http://127.0.0.1:PORT`)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1, access_log=False
    )
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as error:  # reported to the test thread
            failure.append(error)

    thread = threading.Thread(target=run, name=f"fake-provider-{port}", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        if failure:
            raise RuntimeError("the fake server failed to start") from failure[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT)
        sock.close()
        if thread.is_alive():
            raise TimeoutError("the fake server did not stop in time")


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    ready = threading.Event()
    while not server.started and thread.is_alive():
        if time.monotonic() > deadline:
            raise TimeoutError("the fake server did not start in time")
        ready.wait(0.005)  # uvicorn offers no start-up callback; poll its flag briefly


def bounded(delay: float) -> float:
    """A requested response delay, clamped to [0, MAX_DELAY]."""
    return max(0.0, min(delay, MAX_DELAY))
