"""The retry policy (SPEC 7) as one pure function: what to do with a failed provider call.

It reads only the flags of `ProviderError` (never its message), so every adapter's errors
are judged the same way; the randomness is an argument so tests can pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from runner.providers.base import ProviderError

BACKOFF_BASE = 30.0  # seconds: the first retry waits at most this long (full jitter)
BACKOFF_CAP = 3600.0  # no jittered wait is longer, unless the provider asks for it
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

    In order: a possibly-delivered request is "unknown" (reconciled from provider events,
    never resent); 401/403 pause the provider; a refused recipient is suppressed; a
    retryable error is retried after the jittered backoff but never sooner than the
    provider's `retry_after`, until this try is the `max_attempts`-th; anything else fails.
    """
    if error.outcome_unknown:
        return Decision("unknown")
    if error.auth:
        return Decision("pause_provider", delay=AUTH_PAUSE)
    if error.suppress is not None:
        return Decision("suppress", reason=error.suppress)
    if not error.retryable:
        return Decision("fail", reason=PROVIDER_ERROR)
    if attempts + 1 >= max_attempts:
        return Decision("fail", reason=RETRIES_EXHAUSTED)
    delay = backoff(attempts, rng, base=base, cap=cap)
    if error.retry_after is not None:
        delay = max(delay, error.retry_after)
    return Decision("retry", delay=delay)
