"""Unsubscribe tokens: round trip, opacity, and refusal of anything not made with the key."""

from __future__ import annotations

import base64

import pytest

from runner.core.unsubscribe import make_token, read_token, unsubscribe_url

KEY = b"k" * 32


def test_round_trip() -> None:
    token = make_token(KEY, 42, "coupon-after-open")
    assert read_token(KEY, token) == (42, "coupon-after-open")


def test_token_is_url_safe_and_names_nothing_in_clear() -> None:
    token = make_token(KEY, 123456, "welcome")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert "welcome" not in token and "123456" not in token


def test_another_key_is_refused() -> None:
    assert read_token(b"other-key", make_token(KEY, 1, "welcome")) is None


def tampered(token: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("index", [0, 1, 8, 9, -1])
def test_any_flipped_bit_is_refused(index: int) -> None:
    token = make_token(KEY, 1, "welcome")
    assert read_token(KEY, tampered(token, index)) is None


@pytest.mark.parametrize(
    "token", ["", "!!!!", "abc", "a" * 300, "é", "AAAA.BBBB", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
)
def test_garbage_is_refused(token: str) -> None:
    assert read_token(KEY, token) is None


def test_extra_characters_are_refused() -> None:
    token = make_token(KEY, 1, "welcome")
    assert read_token(KEY, token + "=") is None
    assert read_token(KEY, token[:-1]) is None


def test_empty_key_is_an_error_and_reads_nothing() -> None:
    with pytest.raises(ValueError, match="empty"):
        make_token(b"", 1, "welcome")
    assert read_token(b"", make_token(KEY, 1, "welcome")) is None


def test_url_is_under_public_url() -> None:
    assert unsubscribe_url("https://mail.shop.test/", "T0K") == "https://mail.shop.test/u/T0K"
    assert unsubscribe_url("https://mail.shop.test", "T0K") == "https://mail.shop.test/u/T0K"
