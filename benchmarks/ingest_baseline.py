"""The ingest benchmark's baseline: the least an HTTP endpoint can do durably.

A bare ASGI app under uvicorn that stores each request body in SQLite with the
same durability as Postwright (WAL, synchronous=FULL) and commits concurrent
requests together (group commit) in one writer thread. Run by
benchmarks/ingest.py as `python benchmarks/ingest_baseline.py DB PORT`.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class GroupCommitWriter:
    """One thread that inserts every queued body and commits them together."""

    def __init__(self, path: str) -> None:
        self.queue: queue.Queue[tuple[bytes, asyncio.Future[None], asyncio.AbstractEventLoop]] = (
            queue.Queue()
        )
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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.queue.put((body, future, loop))
        await future


def make_app(writer: GroupCommitWriter) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        await writer.store(b"".join(chunks))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b'{"status":"stored"}'})

    return app


if __name__ == "__main__":
    database, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(
        make_app(GroupCommitWriter(database)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )
