"""Hypothesis settings of the reliability suite: a quick profile for `make test`, a long one
for `make reliability` (POSTWRIGHT_RELIABILITY=long).

Each test names its example counts for both profiles with `examples(quick, long)`, so a
slow property (real HTTP) and a fast one (pure functions) each get a fitting budget.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from tests.reliability.intensity import LONG

settings.register_profile(
    "reliability",
    deadline=None,  # a shared two-core machine: time is measured, never a pass condition here
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,  # a failure prints the blob that reproduces it (@reproduce_failure)
)
settings.register_profile("reliability-long", settings.get_profile("reliability"))
PROFILE = settings.get_profile("reliability-long" if LONG else "reliability")


def examples(quick: int, long: int) -> settings:
    """The profile with `quick` examples, or `long` under POSTWRIGHT_RELIABILITY=long."""
    return settings(PROFILE, max_examples=long if LONG else quick)
