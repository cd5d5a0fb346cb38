"""What the benchmarks' helper servers share: bare ASGI plumbing for the fake providers and
the baselines' durable group commit. Imports nothing from `runner`, so a baseline measures
only what it says it does.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def read_body(receive: Receive) -> bytes:
    """The whole request body, however many messages it came in."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def answer_json(send: Send, answer: Any, status: int = 200) -> None:
    """Send `answer` as a JSON response."""
    data = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def run_app(app: App, port: int) -> None:
    """Serve `app` on 127.0.0.1:port until killed (uvloop/httptools when installed)."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
    )


class GroupCommitWriter:
    """One thread that inserts every queued body into SQLite and commits them together (WAL,
    synchronous=FULL: as durable as the runner's store)."""

    def __init__(self, path: str) -> None:
        self.queue: queue.Queue[tuple[bytes, asyncio.Future[None], asyncio.AbstractEventLoop]]
        self.queue = queue.Queue()
        self.connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("CREATE TABLE IF NOT EXISTS events (body BLOB NOT NULL)")
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.executemany(
                "INSERT INTO events (body) VALUES (?)", [(body,) for body, _, _ in batch]
            )
            self.connection.execute("COMMIT")
            for _, future, loop in batch:
                loop.call_soon_threadsafe(future.set_result, None)

    async def store(self, body: bytes) -> None:
        """Return once `body` is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.queue.put((body, future, loop))
        await future
