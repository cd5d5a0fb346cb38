"""A fake Resend Emails API on a real socket (127.0.0.1), for contract tests.

`POST /emails` and `POST /emails/batch` (at most 100; `x-batch-validation: strict` by default
or `permissive`), bearer auth (401 `missing_api_key`, 403 `invalid_api_Key`), JSON bodies
only, 422 `missing_required_field` / `validation_error`, and the Idempotency-Key contract:
a key is remembered for 24 hours; a repeat with the same body gets the first answer again
without a second delivery, a repeat while the first is in flight gets 409
`concurrent_idempotent_requests`, the same key with another body 409
`invalid_idempotent_request`. Tests can script 429 (with Resend's rate-limit headers), 5xx,
hold requests to make them slow (one by one, or every request by `delay` seconds while it
is in progress), and count deliveries per recipient and per idempotency key.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes import bounded
from tests.fakes.mailgun import HOLD_LIMIT, Reply, ScriptedFake

KEY_TTL = 24 * 3600.0
MAX_KEY = 256
MAX_BATCH = 100
_TAG = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def error(status: int, name: str, message: str) -> Reply:
    """Resend's error body."""
    return Reply(status, {"statusCode": status, "name": name, "message": message})


@dataclass
class _Remembered:
    digest: str
    at: float
    reply: Reply | None = None  # None while the first request is in flight


class FakeResend(ScriptedFake):
    """The fake Resend server; `slow_next` holds a request once it is in flight (key
    claimed)."""

    def __init__(
        self, api_key: str = "re_test", clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.clock = clock  # seconds; tests move it to expire idempotency keys
        self.delivered: list[dict[str, Any]] = []  # every email accepted, with its "id"
        self.keys_seen: list[str | None] = []
        self.delay = 0.0  # seconds every request stays in progress (bounded)
        self.in_progress = 0  # requests being processed now
        self.per_key: Counter[str] = Counter()  # requests under each key that delivered
        self._keys: dict[str, _Remembered] = {}

    def rate_limit_next(self, retry_after: int = 2) -> None:
        """The next request gets Resend's 429 with its rate-limit headers."""
        reply = error(
            429,
            "rate_limit_exceeded",
            "Too many requests. You can only make 2 requests per second.",
        )
        reply.headers.update(
            {
                "ratelimit-limit": "2",
                "ratelimit-remaining": "0",
                "ratelimit-reset": str(retry_after),
                "retry-after": str(retry_after),
            }
        )
        self.reply_next(reply)

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """The answer to one POST (runs on a server thread)."""
        with self._lock:
            self.requests += 1
            self.keys_seen.append(headers.get("idempotency-key"))
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            return scripted
        auth = headers.get("authorization", "")
        if not auth:
            return error(401, "missing_api_key", "Missing API key in the authorization header.")
        if auth != f"Bearer {self.api_key}":
            return error(403, "invalid_api_Key", "API key is invalid")
        if path not in ("/emails", "/emails/batch"):
            return error(404, "not_found", "The requested endpoint does not exist.")
        if headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(400, "validation_error", "Content-Type must be application/json")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return error(400, "validation_error", "Invalid JSON body")
        key = headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= MAX_KEY:
            return error(400, "invalid_idempotency_key", "Idempotency key must be 1-256 chars")
        validation = headers.get("x-batch-validation", "strict")
        return self._idempotent(key, body, lambda: self._send(path, payload, validation))

    def _idempotent(self, key: str | None, body: bytes, work: Callable[[], Reply]) -> Reply:
        digest = hashlib.sha256(body).hexdigest()
        if key is not None:
            with self._lock:
                now = self.clock()
                known = self._keys.get(key)
                if known is not None and now - known.at >= KEY_TTL:
                    known = None
                if known is not None:
                    if known.digest != digest:
                        return error(
                            409,
                            "invalid_idempotent_request",
                            "Same idempotency key used with a different request payload.",
                        )
                    if known.reply is None:
                        return error(
                            409,
                            "concurrent_idempotent_requests",
                            "Same idempotency key used while original request is still in "
                            "progress.",
                        )
                    return known.reply
                self._keys[key] = _Remembered(digest, now)
        with self._lock:
            hold = self._holds.popleft() if self._holds else None
            self.in_progress += 1
        try:
            if hold is not None:
                hold.arrived.set()
                hold.release.wait(HOLD_LIMIT)
            time.sleep(bounded(self.delay))
            reply = work()
        finally:
            with self._lock:
                self.in_progress -= 1
        if key is not None:
            with self._lock:
                if 200 <= reply.status < 300:
                    self._keys[key].reply = reply
                    self.per_key[key] += 1
                else:  # a refused request did nothing: the key may be used again
                    del self._keys[key]
        if hold is not None:
            hold.finished.set()
        return reply

    def per_recipient(self) -> Counter[str]:
        """How many emails each address was delivered."""
        with self._lock:
            return Counter(to for email in self.delivered for to in _addresses(email["to"]))

    def _send(self, path: str, payload: Any, validation: str) -> Reply:
        if path == "/emails":
            if not isinstance(payload, dict):
                return error(422, "validation_error", "Body must be an email object")
            problem = _invalid(payload)
            if problem is not None:
                return problem
            return Reply(200, {"id": self._deliver(payload)})
        if not isinstance(payload, list) or not 1 <= len(payload) <= MAX_BATCH:
            return error(422, "validation_error", "Batch must hold 1 to 100 emails")
        problems = [
            _invalid(item)
            if isinstance(item, dict)
            else error(422, "validation_error", "not an object")
            for item in payload
        ]
        if validation != "permissive":
            for problem in problems:
                if problem is not None:
                    return problem
        data: list[dict[str, str]] = []
        errors: list[dict[str, Any]] = []
        for index, (item, problem) in enumerate(zip(payload, problems, strict=True)):
            if problem is None:
                data.append({"id": self._deliver(item)})
            else:
                errors.append({"index": index, "message": problem.body["message"]})
        answer: dict[str, Any] = {"data": data}
        if validation == "permissive":
            answer["errors"] = errors
        return Reply(200, answer)

    def _deliver(self, email: dict[str, Any]) -> str:
        ident = str(uuid.uuid4())
        with self._lock:
            self.delivered.append({**email, "id": ident})
        return ident


def _addresses(to: str | list[str]) -> list[str]:
    return [to] if isinstance(to, str) else to


def _invalid(email: Mapping[str, Any]) -> Reply | None:
    for name in ("from", "to", "subject"):
        if not email.get(name):
            return error(422, "missing_required_field", f"Missing `{name}` field.")
    if not email.get("html") and not email.get("text"):
        return error(422, "missing_required_field", "Missing `html` or `text` field.")
    to = email["to"]
    if not isinstance(to, str | list) or (isinstance(to, list) and len(to) > 50):
        return error(422, "validation_error", "`to` must be a string or up to 50 addresses")
    for tag in email.get("tags") or []:
        if not (
            isinstance(tag, dict)
            and _TAG.match(str(tag.get("name", "")))
            and _TAG.match(str(tag.get("value", "")))
        ):
            return error(
                422,
                "validation_error",
                "Tags should only contain ASCII letters, numbers, underscores, or dashes.",
            )
    return None
