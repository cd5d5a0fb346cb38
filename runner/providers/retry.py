"""The retry policy as one pure function: what to do with a failed provider call.

It reads only the flags of `ProviderError` (never its message), so every adapter's errors
are judged the same way; the randomness is an argument so tests can pin it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from runner.providers.base import ProviderError

BACKOFF_BASE = 2.0  # seconds: the first generic retry waits at most this long (full jitter)
BACKOFF_CAP = 3600.0  # no generic wait is longer
# A wait the provider names (Retry-After, a rate-limit reset) is used as given, stretched by
# at most this fraction so that senders told the same instant do not all return at once...
NAMED_JITTER = 0.1
# ...and never longer than this: a provider asking for days (or 10^14 s) gets an hour.
MAX_NAMED_WAIT = 3600.0
AUTH_PAUSE = 300.0  # seconds a provider stays paused after 401/403 before a probe

Action = Literal["retry", "fail", "unknown", "pause_provider", "suppress"]
RETRIES_EXHAUSTED = "retries_exhausted"
PROVIDER_ERROR = "provider_error"


@dataclass(frozen=True)
class Decision:
    """What the sender does next.

    `delay`: seconds until the retry ("retry") or until the provider is probed again
    ("pause_provider"); None otherwise. `reason`: the send's failure reason ("fail"), or the
    subscriber's suppression reason ("suppress").
    """

    action: Action
    delay: float | None = None
    reason: str | None = None


def backoff(attempts: int, rng: random.Random, *, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempts)]."""
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(attempts, 64)))


def named_wait(seconds: float, rng: random.Random) -> float:
    """The provider's wait plus at most NAMED_JITTER of it, at most MAX_NAMED_WAIT.

    Any float is accepted (a header may say anything): NaN and negatives wait nothing,
    infinity waits the cap.
    """
    if math.isnan(seconds) or seconds <= 0.0:
        return 0.0
    if seconds >= MAX_NAMED_WAIT:
        return MAX_NAMED_WAIT
    return min(MAX_NAMED_WAIT, seconds * (1.0 + rng.uniform(0.0, NAMED_JITTER)))


def decide(
    error: ProviderError,
    attempts: int,
    rng: random.Random,
    *,
    max_attempts: int,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
) -> Decision:
    """The next step after `error`, for a send already tried `attempts` times before this try.

    In order: a request that may have reached the provider and cannot be repeated safely
    (no idempotency key) is "unknown" (reconciled from provider events, never resent);
    401/403 pause the provider; a refused recipient is suppressed; a retryable error is
    retried, until this try is the `max_attempts`-th, after the provider's named wait when
    it gave one, else after the generic backoff; then it fails, or stays "unknown" when this
    try may have reached the provider. Anything else fails.
    """
    if error.outcome_unknown and not error.retryable:
        return Decision("unknown")
    if error.auth:
        return Decision("pause_provider", delay=AUTH_PAUSE)
    if error.suppress is not None:
        return Decision("suppress", reason=error.suppress)
    if not error.retryable:
        return Decision("fail", reason=PROVIDER_ERROR)
    if attempts + 1 >= max_attempts:
        if error.outcome_unknown:  # it may have gone out: "failed" would be a guess
            return Decision("unknown")
        return Decision("fail", reason=RETRIES_EXHAUSTED)
    if error.retry_after is not None:
        return Decision("retry", delay=named_wait(error.retry_after, rng))
    return Decision("retry", delay=backoff(attempts, rng, base=base, cap=cap))
