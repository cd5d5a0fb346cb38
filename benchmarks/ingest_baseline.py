"""The ingest benchmark's baseline: the least an HTTP endpoint can do durably.

A bare ASGI app under uvicorn that stores each request body in SQLite with the
same durability as Postwright (WAL, synchronous=FULL) and commits concurrent
requests together (group commit) in one writer thread. Run by
benchmarks/ingest.py as `python benchmarks/ingest_baseline.py DB PORT`.
"""

from __future__ import annotations

import sys

import uvicorn
from asgi_kit import App, GroupCommitWriter, Receive, Scope, Send, read_body


def make_app(writer: GroupCommitWriter) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await writer.store(await read_body(receive))
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
