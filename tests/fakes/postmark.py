"""A fake Postmark Email API (`POST /email`, `POST /email/batch`) for contract tests.

It checks what Postmark checks (server token, JSON headers, required fields, batch size),
answers in Postmark's shapes (ErrorCode + Message; batch 200 with per-item ErrorCodes) and
records accepted messages. Switches: `status` (answer 429/5xx), `delay` (slow answers,
bounded), `answer_delay` (accepted, then slow to answer: the answer may never arrive),
`refuse` (recipient -> ErrorCode, e.g. 406 inactive, also inside a batch).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import bounded

MAX_BATCH = 500
MAX_BODY = 50 * 1024 * 1024
STREAMS = frozenset({"outbound", "broadcast"})
MESSAGES = {
    10: "The Server Token you provided in the X-Postmark-Server-Token request header was "
    "invalid. Please verify that you are using a valid token.",
    100: "Maintenance",
    300: "Invalid email request",
    402: "Received invalid JSON input.",
    406: "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
    "addresses: {to}. Inactive recipients are ones that have generated a hard bounce, a spam "
    "complaint, or a manual suppression.",
    409: "JSON Required: set the Accept and Content-Type headers to application/json.",
    410: "Too many batch messages: at most 500 per request.",
    429: "Rate limit exceeded.",
    1235: "The message stream for the provided 'MessageStream' was not found.",
}


@dataclass
class FakePostmark:
    """The fake's state; `app()` is the ASGI app to `serve`."""

    token: str = "postmark-server-token"
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    status: int | None = None  # 429, 500 or 503: every request is answered with it
    delay: float = 0.0  # seconds before answering (bounded by tests.fakes.MAX_DELAY)
    refuse: dict[str, int] = field(default_factory=dict)  # recipient -> ErrorCode
    answer_delay: float = 0.0  # seconds between accepting a request and answering it
    in_progress: int = 0  # requests being handled now

    def per_recipient(self) -> Counter[str]:
        """How many messages each address was accepted for."""
        return Counter(message["To"] for message in self.accepted)

    def app(self) -> Starlette:
        """Starlette app with Postmark's two send endpoints."""
        return Starlette(
            routes=[
                Route("/email", self._single, methods=["POST"]),
                Route("/email/batch", self._batch, methods=["POST"]),
            ]
        )

    async def _single(self, request: Request) -> Response:
        return await self._counted(request, self._handle_single)

    async def _batch(self, request: Request) -> Response:
        return await self._counted(request, self._handle_batch)

    async def _counted(
        self, request: Request, handle: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        self.in_progress += 1
        try:
            answer = await handle(request)
            if answer.status_code == 200:
                await asyncio.sleep(bounded(self.answer_delay))
            return answer
        finally:
            self.in_progress -= 1

    async def _handle_single(self, request: Request) -> Response:
        body, refusal = await self._read(request)
        if refusal is not None:
            return refusal
        problem = self._problem(body)
        if problem is not None:
            return _error(422, *problem)
        return JSONResponse(self._accept(body))

    async def _handle_batch(self, request: Request) -> Response:
        body, refusal = await self._read(request)
        if refusal is not None:
            return refusal
        if not isinstance(body, list):
            return _error(422, 402, "A batch is a JSON array of messages.")
        if len(body) > MAX_BATCH:
            return _error(422, 410)
        results: list[dict[str, Any]] = []
        for item in body:
            problem = self._problem(item)
            if problem is None:
                results.append(self._accept(item))
            else:
                results.append({"ErrorCode": problem[0], "Message": problem[1]})
        return JSONResponse(results)  # 200 even when items failed, as Postmark does

    async def _read(self, request: Request) -> tuple[Any, Response | None]:
        """The parsed body, or the refusal Postmark gives before looking at it."""
        self.requests += 1
        if self.delay:
            await asyncio.sleep(bounded(self.delay))
        if request.headers.get("x-postmark-server-token") != self.token:
            return None, _error(401, 10)
        accept = request.headers.get("accept", "")
        content_type = request.headers.get("content-type", "")
        if "application/json" not in accept or not content_type.startswith("application/json"):
            return None, _error(422, 409)
        if self.status is not None:
            code = {429: 429, 503: 100}.get(self.status, 0)
            return None, _error(self.status, code, "Internal Server Error" if not code else "")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return None, _error(413, 300, "Request too large.")
        try:
            return json.loads(raw), None
        except (ValueError, UnicodeDecodeError):
            return None, _error(422, 402)

    def _problem(self, message: Any) -> tuple[int, str] | None:
        """(ErrorCode, Message) when Postmark would refuse this message."""
        if not isinstance(message, dict):
            return 300, "Each message must be a JSON object."
        for name in ("From", "To"):
            if not isinstance(message.get(name), str) or "@" not in message[name]:
                return 300, f"Invalid '{name}' address."
        if not any(isinstance(message.get(k), str) for k in ("HtmlBody", "TextBody")):
            return 300, "Provide either email TextBody or HtmlBody or both."
        headers = message.get("Headers", [])
        if not isinstance(headers, list) or not all(
            isinstance(h, dict) and set(h) == {"Name", "Value"} for h in headers
        ):
            return 300, "Headers must be a list of {Name, Value} objects."
        metadata = message.get("Metadata", {})
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            return 300, "Metadata must map names to strings."
        if message.get("MessageStream", "outbound") not in STREAMS:
            return 1235, MESSAGES[1235]
        code = self.refuse.get(message["To"])
        if code is not None:
            return code, MESSAGES.get(code, "Refused.").format(to=message["To"])
        return None

    def _accept(self, message: dict[str, Any]) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        self.accepted.append({**message, "MessageID": message_id})
        return {
            "To": message["To"],
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "MessageID": message_id,
            "ErrorCode": 0,
            "Message": "OK",
        }


def _error(status: int, code: int, message: str = "") -> JSONResponse:
    return JSONResponse(
        {"ErrorCode": code, "Message": message or MESSAGES.get(code, "Error")}, status_code=status
    )


def accept_all(path: str, body: bytes) -> tuple[int, Any]:
    """Postmark's success answer to any well-formed send (for tests.fakes.flaky): one result
    for `/email`, one per item, in order, for `/email/batch`."""
    sent = json.loads(body)
    items = sent if path.endswith("/batch") else [sent]
    results = [
        {
            "To": item["To"],
            "SubmittedAt": datetime.now(UTC).isoformat(),
            "MessageID": str(uuid.uuid4()),
            "ErrorCode": 0,
            "Message": "OK",
        }
        for item in items
    ]
    return 200, results if path.endswith("/batch") else results[0]
