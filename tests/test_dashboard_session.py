"""The dashboard's session cookie and CSRF tokens, as pure functions."""

from __future__ import annotations

from runner.server.ui import session as s

KEY = s.derive_key(b"a runner secret of enough length")


def test_a_session_reads_back_until_it_expires() -> None:
    made, value = s.new_session(KEY, s.ANONYMOUS, 1000.0)
    assert s.read_session(KEY, value, 1000.0, []) == made
    assert not made.signed_in
    assert s.read_session(KEY, value, made.expires, []) is None


def test_a_forged_or_foreign_cookie_is_refused() -> None:
    _, value = s.new_session(KEY, s.ANONYMOUS, 1000.0)
    who, expires, nonce, signature = value.split(".")
    assert s.read_session(KEY, f"{who}.{int(expires) + 999}.{nonce}.{signature}", 0, []) is None
    other = s.derive_key(b"another runner")
    assert s.read_session(other, value, 1000.0, []) is None
    for broken in ("", "a.b", "x.y.z.w", "-.abc.n.sig"):
        assert s.read_session(KEY, broken, 1000.0, []) is None


def test_a_signed_in_session_keeps_a_fingerprint_and_ends_with_its_key() -> None:
    key = "secret-api-key-0123456789"
    made, value = s.new_session(KEY, s.fingerprint(key), 1000.0)
    assert made.signed_in and key not in value
    assert s.read_session(KEY, value, 1000.0, [key, "other"]) == made
    assert s.read_session(KEY, value, 1000.0, ["other"]) is None  # the key was removed


def test_csrf_tokens_belong_to_one_session() -> None:
    one, _ = s.new_session(KEY, s.ANONYMOUS, 1000.0)
    two, _ = s.new_session(KEY, s.ANONYMOUS, 1000.0)
    token = s.csrf_token(KEY, one)
    assert s.csrf_ok(KEY, one, token)
    assert not s.csrf_ok(KEY, two, token)
    assert not s.csrf_ok(KEY, None, token) and not s.csrf_ok(KEY, one, "")


def test_the_key_is_matched_among_the_configured_ones() -> None:
    assert s.key_matches("b", ["a", "b"]) == "b"
    assert s.key_matches("c", ["a", "b"]) is None
