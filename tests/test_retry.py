"""The retry policy as a table: every row of `decide`, the jitter's bounds, the provider's
named wait (as given, +10 % at most, capped at an hour) and the generic backoff."""

from __future__ import annotations

import math
import random

import pytest

from runner.providers.base import ProviderError
from runner.providers.retry import (
    AUTH_PAUSE,
    BACKOFF_BASE,
    MAX_NAMED_WAIT,
    Decision,
    backoff,
    decide,
    named_wait,
)


class Top(random.Random):
    """Always draws the upper bound, so delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Bottom(random.Random):
    """Always draws the lower bound."""

    def uniform(self, a: float, b: float) -> float:
        return a


def err(**flags: object) -> ProviderError:
    retryable = bool(flags.pop("retryable", False))
    return ProviderError("provider said no", retryable=retryable, **flags)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "attempts", "expected"),
    [
        # retryable: full jitter (Top draws the bound) base*2**attempts
        (err(retryable=True), 0, Decision("retry", delay=30.0)),
        (err(retryable=True), 2, Decision("retry", delay=120.0)),
        # the cap bounds the jitter
        (err(retryable=True), 6, Decision("retry", delay=1000.0)),
        # a named wait is used as given (+10 % at most with Top), not stretched by the backoff
        (err(retryable=True, retry_after=5.0), 3, Decision("retry", delay=5.5)),
        (err(retryable=True, retry_after=1.0), 1, Decision("retry", delay=1.1)),
        # ...and capped at an hour, whatever the provider said
        (err(retryable=True, retry_after=5000.0), 0, Decision("retry", delay=MAX_NAMED_WAIT)),
        (err(retryable=True, retry_after=1e14), 0, Decision("retry", delay=MAX_NAMED_WAIT)),
        # the last try before the budget still retries; the max_attempts-th (10) fails
        (err(retryable=True), 8, Decision("retry", delay=1000.0)),
        (err(retryable=True), 9, Decision("fail", reason="retries_exhausted")),
        (err(retryable=True, retry_after=5.0), 12, Decision("fail", reason="retries_exhausted")),
        # may have reached a provider without idempotency keys: never resent
        (err(outcome_unknown=True), 0, Decision("unknown")),
        (err(outcome_unknown=True), 3, Decision("unknown")),
        # may have reached a provider with keys: retried under the key until the budget,
        # then unknown, never "failed" (it may have gone out)
        (err(retryable=True, outcome_unknown=True), 0, Decision("retry", delay=30.0)),
        (err(retryable=True, outcome_unknown=True), 9, Decision("unknown")),
        # 401/403: pause the provider, probe after 5 minutes
        (err(auth=True, status=401), 0, Decision("pause_provider", delay=AUTH_PAUSE)),
        (err(auth=True, status=403), 3, Decision("pause_provider", delay=AUTH_PAUSE)),
        # a refused recipient: suppress
        (err(suppress="bounced", status=422), 0, Decision("suppress", reason="bounced")),
        # any other permanent error fails with the provider's message
        (err(status=400), 0, Decision("fail", reason="provider_error")),
        (err(status=422), 2, Decision("fail", reason="provider_error")),
    ],
)
def test_decision_table(error: ProviderError, attempts: int, expected: Decision) -> None:
    decision = decide(error, attempts, Top(), max_attempts=10, base=30.0, cap=1000.0)
    assert decision == expected


def test_default_max_budget_of_one_fails_at_once() -> None:
    decision = decide(err(retryable=True), 0, Top(), max_attempts=1)
    assert decision == Decision("fail", reason="retries_exhausted")


def test_the_generic_backoff_starts_at_a_few_seconds_and_caps_at_an_hour() -> None:
    first = decide(err(retryable=True), 0, Top(), max_attempts=20).delay
    assert first == BACKOFF_BASE and first <= 5.0
    assert decide(err(retryable=True), 1, Top(), max_attempts=20).delay == 2 * BACKOFF_BASE
    assert decide(err(retryable=True), 15, Top(), max_attempts=20).delay == 3600.0


@pytest.mark.parametrize("attempts", [0, 1, 3, 5, 8, 200])
def test_jitter_stays_within_full_jitter_bounds(attempts: int) -> None:
    rng = random.Random(attempts)
    base, cap = 30.0, 3600.0
    bound = min(cap, base * 2.0 ** min(attempts, 64))
    plain = [backoff(attempts, rng, base=base, cap=cap) for _ in range(1000)]
    assert all(0.0 <= d <= bound for d in plain)
    assert max(plain) > bound * 0.9 and min(plain) < bound * 0.1  # spread over the range


@pytest.mark.parametrize("seconds", [0.5, 2.0, 7.0, 45.0, 3000.0])
@pytest.mark.parametrize("attempts", [0, 4, 9])
def test_a_named_wait_is_used_as_given_plus_at_most_ten_percent(
    seconds: float, attempts: int
) -> None:
    rng = random.Random(int(seconds * 10) + attempts)
    asked = err(retryable=True, retry_after=seconds)
    delays = [decide(asked, attempts, rng, max_attempts=1000).delay for _ in range(500)]
    cap = min(seconds * 1.1, MAX_NAMED_WAIT)
    assert all(d is not None and seconds <= d <= cap for d in delays)
    assert len(set(delays)) > 1  # jittered, so senders told the same instant spread out


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, 0.0),
        (-5.0, 0.0),
        (math.nan, 0.0),
        (3600.0, 3600.0),
        (1e14, 3600.0),  # once crashed the recording (OverflowError in timedelta)
        (1e308, 3600.0),
        (math.inf, 3600.0),
    ],
)
def test_absurd_named_waits_are_capped(seconds: float, expected: float) -> None:
    assert named_wait(seconds, Top()) == expected
    assert named_wait(seconds, Bottom()) == expected


def test_flags_take_precedence_in_order() -> None:
    # unknown (without a key) beats auth beats suppress beats retryable
    both = err(outcome_unknown=True, auth=True, suppress="bounced")
    assert decide(both, 0, Top(), max_attempts=3).action == "unknown"
    auth = err(retryable=True, auth=True, suppress="bounced")
    assert decide(auth, 0, Top(), max_attempts=3).action == "pause_provider"
    refused = err(retryable=True, suppress="complained")
    assert decide(refused, 0, Top(), max_attempts=3) == Decision("suppress", reason="complained")
