"""The retry policy (SPEC 7) as a table: every row of `decide`, and the jitter's bounds."""

from __future__ import annotations

import random

import pytest

from runner.providers.base import ProviderError
from runner.providers.retry import AUTH_PAUSE, Decision, backoff, decide


class Top(random.Random):
    """Always draws the upper bound, so delays are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


def err(**flags: object) -> ProviderError:
    retryable = bool(flags.pop("retryable", False))
    return ProviderError("provider said no", retryable=retryable, **flags)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "attempts", "expected"),
    [
        # retryable: full jitter (Top draws the bound) base*2**attempts
        (err(retryable=True), 0, Decision("retry", delay=30.0)),
        (err(retryable=True), 2, Decision("retry", delay=120.0)),
        # the cap bounds the jitter...
        (err(retryable=True), 6, Decision("retry", delay=1000.0)),
        # ...but the provider's Retry-After wins when it is longer
        (err(retryable=True, retry_after=5000.0), 0, Decision("retry", delay=5000.0)),
        # and is ignored when the backoff is already longer
        (err(retryable=True, retry_after=1.0), 1, Decision("retry", delay=60.0)),
        # the last try before the budget still retries; the max_attempts-th (10) fails
        (err(retryable=True), 8, Decision("retry", delay=1000.0)),
        (err(retryable=True), 9, Decision("fail", reason="retries_exhausted")),
        (err(retryable=True, retry_after=5.0), 12, Decision("fail", reason="retries_exhausted")),
        # may have reached the provider: never resent
        (err(outcome_unknown=True), 0, Decision("unknown")),
        (err(outcome_unknown=True), 3, Decision("unknown")),
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


def test_default_base_and_cap() -> None:
    assert decide(err(retryable=True), 0, Top(), max_attempts=9).delay == 30.0
    assert decide(err(retryable=True), 7, Top(), max_attempts=9).delay == 3600.0


@pytest.mark.parametrize("attempts", [0, 1, 3, 5, 8, 200])
def test_jitter_stays_within_full_jitter_bounds_and_never_below_retry_after(
    attempts: int,
) -> None:
    rng = random.Random(attempts)
    base, cap, after = 30.0, 3600.0, 45.0
    bound = min(cap, base * 2.0 ** min(attempts, 64))
    plain = [backoff(attempts, rng, base=base, cap=cap) for _ in range(1000)]
    assert all(0.0 <= d <= bound for d in plain)
    assert max(plain) > bound * 0.9 and min(plain) < bound * 0.1  # spread over the range
    delays = [
        decide(err(retryable=True, retry_after=after), attempts, rng, max_attempts=1000).delay
        for _ in range(1000)
    ]
    assert all(d is not None and max(after, 0.0) <= d <= max(bound, after) for d in delays)


def test_flags_take_precedence_in_order() -> None:
    # unknown beats auth beats suppress beats retryable
    both = err(retryable=True, outcome_unknown=True, auth=True, suppress="bounced")
    assert decide(both, 0, Top(), max_attempts=3).action == "unknown"
    auth = err(retryable=True, auth=True, suppress="bounced")
    assert decide(auth, 0, Top(), max_attempts=3).action == "pause_provider"
    refused = err(retryable=True, suppress="complained")
    assert decide(refused, 0, Top(), max_attempts=3) == Decision("suppress", reason="complained")
