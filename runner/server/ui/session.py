"""The dashboard's session cookie and CSRF tokens (docs/dashboard.md "Signing in").

A session is `<who>.<expires>.<nonce>.<signature>`: `who` is `-` for a visitor who has not
signed in (loopback mode, or the sign-in form) or a fingerprint of the API key used to sign
in (never the key itself), so removing a key from the configuration ends its sessions. The
signature is an HMAC under a key derived from the runner's own secret. A form's CSRF token is
an HMAC of the session's nonce: a page of another site can read neither.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

COOKIE = "pw_session"
LIFETIME_SECONDS = 12 * 60 * 60
ANONYMOUS = "-"


@dataclass(frozen=True)
class Session:
    """One visitor's session as read from a valid cookie."""

    who: str
    expires: int
    nonce: str

    @property
    def signed_in(self) -> bool:
        """Whether an API key signed this session in."""
        return self.who != ANONYMOUS


def derive_key(runner_secret: bytes) -> bytes:
    """The signing key of sessions and CSRF tokens (apart from every other use of the secret)."""
    return hmac.new(runner_secret, b"postwright dashboard session v1", hashlib.sha256).digest()


def fingerprint(api_key: str) -> str:
    """What a session keeps of the API key that signed it in."""
    return hashlib.sha256(b"postwright dashboard key:" + api_key.encode()).hexdigest()[:32]


def new_session(key: bytes, who: str, now: float) -> tuple[Session, str]:
    """A fresh session and its cookie value."""
    session = Session(who, int(now) + LIFETIME_SECONDS, secrets.token_hex(16))
    return session, _sign(key, session)


def read_session(key: bytes, value: str | None, now: float, keys: Iterable[str]) -> Session | None:
    """The session of a cookie value, or None when it is missing, forged, expired, or signed
    in with a key no longer configured."""
    if not value:
        return None
    parts = value.split(".")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    session = Session(parts[0], int(parts[1]), parts[2])
    if not hmac.compare_digest(_sign(key, session), value) or session.expires <= now:
        return None
    if session.signed_in and not any(
        hmac.compare_digest(session.who, fingerprint(k)) for k in keys
    ):
        return None
    return session


def csrf_token(key: bytes, session: Session) -> str:
    """The token every state-changing form of this session carries."""
    return hmac.new(key, f"csrf:{session.nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, session: Session | None, given: str | None) -> bool:
    """Whether a posted token belongs to this session."""
    if session is None or not given:
        return False
    return hmac.compare_digest(csrf_token(key, session), given)


def key_matches(given: str, keys: Iterable[str]) -> str | None:
    """The configured key equal to `given` (compared in constant time), or None."""
    found = None
    for key in keys:
        if hmac.compare_digest(given.encode(), key.encode()):
            found = key
    return found


def _sign(key: bytes, session: Session) -> str:
    payload = f"{session.who}.{session.expires}.{session.nonce}"
    signature = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{signature}"
