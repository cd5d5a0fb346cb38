"""Bearer keys and Standard Webhooks verification (README.md "The runner's HTTP API")."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from runner.server.auth import AuthError, bearer_ok, sign, verify_webhook

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"id":"e1","type":"signup","subscriber":{"email":"a@b.co"}}'


def headers(signature: str, stamp: int, msg_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def stamp(delta: timedelta = timedelta()) -> int:
    return int((NOW + delta).timestamp())


def test_bearer_keys() -> None:
    keys = frozenset({"alpha", "beta"})
    assert bearer_ok("Bearer beta", keys)
    assert bearer_ok("bearer alpha", keys)
    assert not bearer_ok("Bearer gamma", keys)
    assert not bearer_ok("Basic alpha", keys)
    assert not bearer_ok(None, keys)
    assert not bearer_ok("Bearer ", keys)


def test_valid_signature_accepted() -> None:
    t = stamp()
    assert (
        verify_webhook(headers(sign(SECRET, "msg_1", t, BODY), t), BODY, [SECRET], NOW) == "msg_1"
    )


@pytest.mark.parametrize("seconds", [-301, 301, -3600, 3600])
def test_timestamp_outside_five_minutes_rejected_both_ways(seconds: int) -> None:
    t = stamp(timedelta(seconds=seconds))
    with pytest.raises(AuthError, match="5 minutes"):
        verify_webhook(headers(sign(SECRET, "msg_1", t, BODY), t), BODY, [SECRET], NOW)


@pytest.mark.parametrize("seconds", [-299, 299])
def test_timestamp_inside_window_accepted(seconds: int) -> None:
    t = stamp(timedelta(seconds=seconds))
    assert verify_webhook(headers(sign(SECRET, "msg_1", t, BODY), t), BODY, [SECRET], NOW)


def test_key_rotation_any_signature_any_secret() -> None:
    t = stamp()
    listed = f"{sign(OTHER, 'msg_1', t, BODY)} {sign(SECRET, 'msg_1', t, BODY)}"
    assert verify_webhook(headers(listed, t), BODY, [SECRET], NOW) == "msg_1"
    only_old = sign(OTHER, "msg_1", t, BODY)
    assert verify_webhook(headers(only_old, t), BODY, [SECRET, OTHER], NOW) == "msg_1"
    with pytest.raises(AuthError):
        verify_webhook(headers(only_old, t), BODY, [SECRET], NOW)


def test_one_byte_mutation_rejected() -> None:
    t = stamp()
    good = headers(sign(SECRET, "msg_1", t, BODY), t)
    for index in (0, len(BODY) // 2, len(BODY) - 1):
        mutated = bytearray(BODY)
        mutated[index] ^= 0x01
        with pytest.raises(AuthError, match="no webhook signature"):
            verify_webhook(good, bytes(mutated), [SECRET], NOW)
    with pytest.raises(AuthError):
        verify_webhook({**good, "webhook-id": "msg_2"}, BODY, [SECRET], NOW)


def test_missing_headers_and_unknown_versions() -> None:
    t = stamp()
    with pytest.raises(AuthError, match="missing"):
        verify_webhook({"webhook-id": "x"}, BODY, [SECRET], NOW)
    v1a = "v1a," + sign(SECRET, "msg_1", t, BODY).split(",", 1)[1]
    with pytest.raises(AuthError):
        verify_webhook(headers(v1a, t), BODY, [SECRET], NOW)
    with pytest.raises(AuthError, match="integer"):
        verify_webhook(headers("v1,AAAA", 0) | {"webhook-timestamp": "soon"}, BODY, [SECRET], NOW)
