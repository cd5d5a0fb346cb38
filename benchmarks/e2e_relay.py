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
import sys
import time
import uuid
from typing import Any

import aiohttp
import uvloop
from aiohttp import web
from asgi_kit import GroupCommitWriter, Receive, Scope, Send, answer_json, read_body, run_app

# --- the fake Resend ---------------------------------------------------------------------------

_times: dict[str, float] = {}
_last = [0.0]


def _note(email: Any, now: float) -> None:
    subject = email.get("subject", "") if isinstance(email, dict) else ""
    _times[subject.rsplit(" ", 1)[-1]] = now
    _last[0] = now


async def fake_resend(scope: Scope, receive: Receive, send: Send) -> None:
    """Resend's success answers, and the arrivals for the load client."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = await read_body(receive)
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
    await answer_json(send, answer)


# --- the relay baseline ------------------------------------------------------------------------


def relay_app(database: str, provider: str) -> web.Application:
    writer = GroupCommitWriter(database)
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
        run_app(fake_resend, port)
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
