"""The two helper servers of benchmarks/e2e.py, each in its own process.

`fake PORT`: a fast fake Resend (uvicorn, bare ASGI) answering Resend's documented success JSON
(`{"id": ...}` for POST /emails, `{"data": [{"id": ...}, ...]}` for /emails/batch). It notes
when each email arrived (the number at the end of its subject) on the system-wide monotonic
clock, which the load client shares: GET /arrivals gives the count and the last arrival
(`?dump=1` adds every arrival), POST /reset forgets them.

`relay PORT DB PROVIDER`: the baseline, the least an event -> email relay can do durably. An
aiohttp server that appends each event to SQLite with group commit (WAL, synchronous=FULL: one
transaction per batch of concurrent requests, in one writer thread), then POSTs one Resend email
to PROVIDER with aiohttp and answers 202 after the provider answered.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import uvicorn
import uvloop
from aiohttp import web

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# --- the fake Resend ---------------------------------------------------------------------------

_times: dict[str, float] = {}
_last = [0.0]


def _note(email: Any, now: float) -> None:
    subject = email.get("subject", "") if isinstance(email, dict) else ""
    _times[subject.rsplit(" ", 1)[-1]] = now
    _last[0] = now


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def fake_resend(scope: Scope, receive: Receive, send: Send) -> None:
    """Resend's success answers, and the arrivals for the load client."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = await _body(receive)
    now = time.monotonic()
    answer: Any
    if path == "/emails":
        _note(json.loads(body), now)
        answer = {"id": str(uuid.uuid4())}
    elif path == "/emails/batch":
        emails = json.loads(body)
        for email in emails:
            _note(email, now)
        answer = {"data": [{"id": str(uuid.uuid4())} for _ in emails]}
    elif path == "/reset":
        _times.clear()
        _last[0] = 0.0
        answer = {}
    else:
        answer = {"count": len(_times), "last": _last[0]}
        if b"dump=1" in scope.get("query_string", b""):
            answer["times"] = _times
    data = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def run_fake(port: int) -> None:
    uvicorn.run(
        fake_resend,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
    )


# --- the relay baseline ------------------------------------------------------------------------


class GroupCommit:
    """One writer thread: inserts every queued event and commits them in one transaction."""

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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.queue.put((body, future, loop))
        await future


def relay_app(database: str, provider: str) -> web.Application:
    writer = GroupCommit(database)
    state: dict[str, aiohttp.ClientSession] = {}

    async def start(app: web.Application) -> None:
        state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    async def stop(app: web.Application) -> None:
        await state["session"].close()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def relay(request: web.Request) -> web.Response:
        body = await request.read()
        event = json.loads(body)
        await writer.store(body)
        email = {
            "from": "Shop <news@shop.test>",
            "to": [event["subscriber"]["email"]],
            "subject": f"Hi {event['data']['n']}",
            "html": f"<p>Hello {event['subscriber']['email']}, welcome</p>",
            "text": f"Hello {event['subscriber']['email']}, welcome",
        }
        headers = {"Authorization": "Bearer re_bench", "Idempotency-Key": event["id"]}
        async with state["session"].post(f"{provider}/emails", json=email, headers=headers) as out:
            sent = await out.json()
        return web.json_response({"status": "sent", "id": sent["id"]}, status=202)

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/health", health)
    app.router.add_post("/", relay)
    return app


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "fake":
        run_fake(port)
    else:
        # The same event loop as serve's, so the baseline is not slowed by asyncio's own.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        web.run_app(
            relay_app(sys.argv[3], sys.argv[4]),
            host="127.0.0.1",
            port=port,
            print=None,
            access_log=None,
        )


if __name__ == "__main__":
    main()
