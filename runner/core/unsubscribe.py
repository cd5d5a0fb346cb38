"""Signed, opaque unsubscribe tokens and the links that carry them (RFC 8058 one-click unsubscribe).

A token is base64url (no padding) of: a version byte, the subscriber id (8 bytes), the id
of the message that carried it, and the first 16 bytes of an HMAC-SHA256 over all of that.
The message id lets a one-click unsubscribe count in that automation's stats. Only a holder
of the runner's unsubscribe key can make one; reading checks the MAC in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re

_VERSION = b"\x02"
_ID_BYTES = 8
_MAC_BYTES = 16
_DOMAIN = b"postwright-unsubscribe\x00"  # keeps these MACs apart from any other use of the key
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
_MAX_TOKEN = 200  # longer than any token we make (message ids are 28 characters)


def _mac(key: bytes, body: bytes) -> bytes:
    # The one-shot form: the same HMAC without building an HMAC object (one per email).
    return hmac.digest(key, _DOMAIN + body, "sha256")[:_MAC_BYTES]


def make_token(key: bytes, subscriber_id: int, message_id: str) -> str:
    """The token naming one subscriber and the message that carried it."""
    if not key:
        raise ValueError("the unsubscribe key is empty")
    body = _VERSION + subscriber_id.to_bytes(_ID_BYTES, "big") + message_id.encode("utf-8")
    return base64.urlsafe_b64encode(body + _mac(key, body)).rstrip(b"=").decode("ascii")


def read_token(key: bytes, token: str) -> tuple[int, str] | None:
    """(subscriber id, message id) of a token made with `key`; None for anything else."""
    if not key or len(token) > _MAX_TOKEN or _ALPHABET.fullmatch(token) is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) <= 1 + _ID_BYTES + _MAC_BYTES or raw[:1] != _VERSION:
        return None
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, body)):
        return None
    try:
        message_id = body[1 + _ID_BYTES :].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return int.from_bytes(body[1 : 1 + _ID_BYTES], "big"), message_id


def unsubscribe_url(public_url: str, token: str) -> str:
    """The one-click link under the runner's public URL."""
    return f"{public_url.rstrip('/')}/u/{token}"
