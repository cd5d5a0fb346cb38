"""A raw HTTP/1.1 server on 127.0.0.1 that misbehaves on purpose, after reading a request.

ASGI servers always answer (an app that fails gets a 500), so this one speaks HTTP itself:
it reads each request whole (so the provider "accepted" it) and then, by script, answers
(keep-alive), drops the connection without a word, resets it (RST), or stalls until
released and then drops it. Requests are recorded with the connection they came on, so a
test can tell a fresh connection from a reused keep-alive one. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from tests.fakes import START_TIMEOUT

Action = Literal["answer", "drop", "reset", "stall"]
Answer = Callable[[str, bytes], tuple[int, Any]]  # (path, body) -> (status, JSON body)
STALL_LIMIT = 20.0  # seconds a stalled request waits at most for its release


@dataclass(frozen=True)
class Received:
    """One request the server read whole."""

    path: str
    body: bytes
    connection: int  # which TCP connection (1, 2, ...) it came on
    action: Action

    def json(self) -> Any:
        """The parsed body."""
        return json.loads(self.body)


@dataclass
class Flaky:
    """The server; use as a context manager, then `base_url` is where it listens."""

    answer: Answer
    script: deque[Action] = field(default_factory=deque)  # then "answer" for the rest
    received: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)  # a request stalls
    release: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._connections = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flaky-provider", daemon=True)
        self._server: asyncio.Server | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def then(self, *actions: Action) -> Flaky:
        """Append actions for the next requests, in order."""
        with self._lock:
            self.script.extend(actions)
        return self

    def __enter__(self) -> Flaky:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            raise TimeoutError("the flaky server did not start in time")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release.set()
        self._loop.call_soon_threadsafe(self._stop)
        self._thread.join(START_TIMEOUT)
        self._sock.close()
        if self._thread.is_alive():
            raise TimeoutError("the flaky server did not stop in time")

    def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._serve, sock=self._sock)
            self._started.set()
            try:
                await self._server.serve_forever()
            except asyncio.CancelledError:
                pass

        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._connections += 1
            connection = self._connections
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                path, body = request
                with self._lock:
                    action: Action = self.script.popleft() if self.script else "answer"
                    self.received.append(Received(path, body, connection, action))
                if action == "answer":
                    status, payload = self.answer(path, body)
                    writer.write(_response(status, payload))
                    await writer.drain()
                    continue
                if action == "stall":
                    self.arrived.set()
                    await asyncio.get_running_loop().run_in_executor(
                        None, self.release.wait, STALL_LIMIT
                    )
                if action == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.close()
                return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # stopping: end quietly (asyncio logs a cancelled
            return  # connection callback as an error)
        finally:
            if not writer.is_closing():
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes] | None:
    """(path, body) of the next request on the connection, or None once the client left."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return path, await reader.readexactly(length)


def _response(status: int, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("latin-1") + body
