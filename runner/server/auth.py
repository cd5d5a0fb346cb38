"""Request authentication: bearer API keys and Standard Webhooks signatures
(README.md "The runner's HTTP API").

Pure functions over header values and raw body bytes; comparisons are constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime

from runner.errors import PostwrightError

TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"


class AuthError(PostwrightError):
    """Why a request was not authenticated (the message is safe to show the client)."""


def bearer_ok(authorization: str | None, keys: Iterable[str]) -> bool:
    """Whether an `Authorization: Bearer <key>` header carries one of `keys`."""
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = token.strip().encode("utf-8")
    # Compare against every key, never stopping early, so timing reveals nothing.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode("utf-8"))
    return matched


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AuthError("webhook secret is not base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message (used by tests and clients)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_webhook(
    headers: Mapping[str, str], body: bytes, secrets: Iterable[str], now: datetime
) -> str:
    """Check a Standard Webhooks signature; returns the `webhook-id` or raises AuthError.

    `headers` must be looked up case-insensitively (Starlette's Headers are).
    The timestamp must lie within 5 minutes of `now` in either direction;
    any `v1` entry of the space-separated signature list may match any secret
    (key rotation).
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise AuthError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise AuthError("webhook-timestamp is not an integer") from None
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise AuthError("webhook-timestamp is more than 5 minutes away from the server time")
    given: list[bytes] = []
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    content = f"{msg_id}.{stamp}.".encode() + body
    for secret in secrets:
        expected = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
        for candidate in given:
            if hmac.compare_digest(candidate, expected):
                return msg_id
    raise AuthError("no webhook signature matches")
