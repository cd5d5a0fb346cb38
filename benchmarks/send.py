"""Messages/s from the sender loop (claim, render, mark in flight, send, record) to a local
fake Postmark, against a bare aiohttp loop posting the same bodies with the same concurrency
to the same server, in the same run (issue 5). The in-flight mark (issue 9) is one commit
for every wave of requests the sender starts together.

The fake is a minimal ASGI app (uvicorn with uvloop/httptools, in its own process) answering
Postmark's success JSON for `/email` and one item per message for `/email/batch`.

    .venv/bin/python benchmarks/send.py [--messages 5000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from asgi_kit import Receive, Scope, Send, answer_json, read_body, run_app
from httpx_aiohttp import AiohttpTransport

from runner.core.clock import FakeClock
from runner.core.config import PostmarkProvider as PostmarkSettings
from runner.core.records import AppliedAutomation, HistoryEntry, PendingSend, SendStatus, Subscriber
from runner.engine.catalog import Catalog
from runner.engine.context import EngineContext
from runner.engine.sender import send_due
from runner.providers import Providers
from runner.providers.base import OutgoingMessage
from runner.providers.http import make_client
from runner.providers.postmark import PostmarkProvider, payload
from runner.store import open_store
from runner.store.base import Store, WriteTx

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
TOKEN = "bench-token"
CTX = EngineContext("UTC", "https://mail.shop.test", b"unsubscribe-key-for-bench-000000")
SOURCE = """\
id: bench
status: running
trigger: {type: api}
email:
  from: "Shop <news@shop.test>"
  subject: "Hi {{ subscriber.fields.name | default('there') }}"
  html: "<p>Hello {{ subscriber.email }}, here is {{ event.data.coupon | default('none') }}</p>"
  text: "Hello {{ subscriber.email }}"
"""
_OK = {"To": "x@shop.test", "SubmittedAt": "2026-03-02T08:00:00Z", "ErrorCode": 0, "Message": "OK"}


# --- the fake provider --------------------------------------------------------------------


async def fake_postmark(scope: Scope, receive: Receive, send: Send) -> None:
    """Postmark's success answers: one object for /email, one per item for /email/batch."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    if scope["path"] == "/email/batch":
        count = len(json.loads(body))
        answer: Any = [{**_OK, "MessageID": str(uuid.uuid4())} for _ in range(count)]
    else:
        answer = {**_OK, "MessageID": str(uuid.uuid4())}
    await answer_json(send, answer)


def serve_forever(port: int) -> None:
    """Run the fake on 127.0.0.1:port until killed."""
    run_app(fake_postmark, port)


def start_fake(script: str = __file__) -> tuple[subprocess.Popen[bytes], str]:
    """The fake in its own process (so it does not share the client's CPU); its base URL.
    `script` is the benchmark whose `--serve PORT` runs it (this one's fake by default)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, script, "--serve", str(port)])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the fake provider did not start")


# --- the baselines: the same bodies, no store --------------------------------------------


def bodies(count: int) -> list[bytes]:
    """What the sender posts to /email, one per message (same size and shape)."""
    out: list[bytes] = []
    for index in range(count):
        email = f"s{index}@shop.test"
        message = OutgoingMessage(
            send_id=f"send-{index:06d}",
            message_id=f"{index:028x}",
            to=email,
            from_="Shop <news@shop.test>",
            reply_to=None,
            subject="Hi there",
            html=f"<p>Hello {email}, here is none</p>",
            text=f"Hello {email}",
            headers={
                "List-Unsubscribe": "<https://mail.shop.test/u/" + "t" * 80 + ">",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        out.append(json.dumps(payload(message, "outbound")).encode())
    return out


HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "X-Postmark-Server-Token": TOKEN,
}


async def pooled(
    items: list[bytes], concurrency: int, post: Callable[[bytes], Awaitable[None]]
) -> float:
    """Post every item with `concurrency` workers; messages/s."""
    queue = iter(items)

    async def worker() -> None:
        for item in queue:
            await post(item)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(items) / (time.perf_counter() - started)


async def aiohttp_loop(url: str, items: list[bytes], concurrency: int) -> float:
    """The baseline: a bare aiohttp session."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(item: bytes) -> None:
            async with session.post(url + "/email", data=item, headers=HEADERS) as response:
                await response.read()
                assert response.status == 200

        return await pooled(items, concurrency, post)


async def httpx_loop(
    url: str, items: list[bytes], concurrency: int, aiohttp_transport: bool
) -> float:
    """The same loop through httpx (our client), with either transport."""
    transport = transport_for(concurrency, aiohttp_transport)
    async with make_client(max_connections=concurrency, transport=transport) as client:

        async def post(item: bytes) -> None:
            response = await client.post(url + "/email", content=item, headers=HEADERS)
            assert response.status_code == 200

        return await pooled(items, concurrency, post)


def transport_for(concurrency: int, aiohttp_transport: bool) -> httpx.AsyncBaseTransport:
    """httpx-aiohttp's transport or httpx's own, with a pool as large as the concurrency."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if aiohttp_transport:
        return AiohttpTransport(limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)


# --- the sender loop ----------------------------------------------------------------------


async def seed(store: Store, count: int) -> None:
    """One running automation and `count` due sends, each to its own subscriber."""
    row = AppliedAutomation(
        "bench", 1, "running", SOURCE, {}, "automations/bench.yaml", None, T0, T0, None
    )

    def work(tx: WriteTx) -> None:
        tx.save_automation(row)
        tx.add_history(HistoryEntry("bench", T0 - timedelta(days=1), "status", None, "running"))
        for index in range(count):
            person = tx.save_subscriber(Subscriber(None, f"s{index}@shop.test", {}))
            assert person.id is not None
            send_id = f"send-{index:06d}"
            tx.insert_pending(
                PendingSend(
                    id=send_id,
                    automation_id="bench",
                    subscriber_id=person.id,
                    email=person.email,
                    due_at=T0,
                    status=SendStatus.PENDING,
                    trigger_at=T0,
                    trigger_event={"name": "api", "data": {}},
                    created_at=T0,
                    series_id=send_id,
                )
            )

    await store.write(work)


async def sender_loop(
    url: str, count: int, concurrency: int, *, aiohttp_transport: bool, batch: bool
) -> float:
    """Messages/s of send_due rounds over a fresh SQLite store until nothing is due."""
    with tempfile.TemporaryDirectory() as folder:
        store = open_store("sqlite:///" + str(Path(folder) / "bench.db"), FakeClock(T0))
        try:
            await seed(store, count)
            catalog = await store.read(
                lambda tx: Catalog.build(tx.automations(), tx.status_changes())
            )
            transport = transport_for(concurrency, aiohttp_transport)
            async with make_client(max_connections=concurrency, transport=transport) as client:
                settings = PostmarkSettings(type="postmark", server_token_env="TOKEN", base_url=url)
                provider = PostmarkProvider("default", settings, {"server_token": TOKEN}, client)
                if not batch:
                    provider.max_batch = 1  # one request per message
                limit = 5000 if batch else 1000
                providers = Providers({"default": provider})
                started = time.perf_counter()
                claimed = 0
                while done := await send_due(
                    store, catalog, CTX, providers, T0, limit, concurrency=concurrency
                ):
                    claimed += done
                elapsed = time.perf_counter() - started
            sent = await store.read(
                lambda tx: len(tx.pending_sends("bench", [SendStatus.SENT], count + 1))
            )
            assert sent == count == claimed, (sent, count, claimed)
            return count / elapsed
        finally:
            await store.close()


# --- the report --------------------------------------------------------------------------


async def measure(url: str, count: int, concurrency: int) -> dict[str, float]:
    """Every figure once, after a short warm-up of the server and the clients."""
    items = bodies(count)
    await aiohttp_loop(url, items[:500], concurrency)
    return {
        "aiohttp (baseline)": await aiohttp_loop(url, items, concurrency),
        "httpx, default transport": await httpx_loop(url, items, concurrency, False),
        "httpx, httpx-aiohttp transport": await httpx_loop(url, items, concurrency, True),
        "sender, default transport": await sender_loop(
            url, count, concurrency, aiohttp_transport=False, batch=False
        ),
        "sender, httpx-aiohttp transport": await sender_loop(
            url, count, concurrency, aiohttp_transport=True, batch=False
        ),
        "sender batch (500), default transport": await sender_loop(
            url, count, concurrency, aiohttp_transport=False, batch=True
        ),
        "sender batch (500), httpx-aiohttp transport": await sender_loop(
            url, count, concurrency, aiohttp_transport=True, batch=True
        ),
    }


def report(figures: dict[str, float], count: int, concurrency: int) -> str:
    """The table: each rate and its ratio to the aiohttp baseline, then the targets."""
    baseline = figures["aiohttp (baseline)"]
    lines = [
        f"{count} messages, {concurrency} concurrent requests, fake Postmark on 127.0.0.1",
        f"{'loop':<46}{'messages/s':>12}{'vs aiohttp':>12}",
    ]
    for name, rate in figures.items():
        lines.append(f"{name:<46}{rate:>12,.0f}{rate / baseline:>11.0%}")
    single = max(figures["sender, default transport"], figures["sender, httpx-aiohttp transport"])
    batch = max(
        figures["sender batch (500), default transport"],
        figures["sender batch (500), httpx-aiohttp transport"],
    )
    lines.append(f"single sends vs aiohttp: {single / baseline:.0%} (target >= 40%)")
    lines.append(f"batch vs single sends:   {batch / single:.1f}x (target >= 5x)")
    return "\n".join(lines)


def main() -> int:
    """Start the fake, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_forever(args.serve)
        return 0
    process, url = start_fake()
    try:
        figures = asyncio.run(measure(url, args.messages, args.concurrency))
    finally:
        process.terminate()
        process.wait(10)
    print(report(figures, args.messages, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
