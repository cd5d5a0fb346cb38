"""How hard the reliability tests push: quick under `make test`, long under `make reliability`.

POSTWRIGHT_RELIABILITY=long (set by `make reliability`) picks the long figures. Random
choices come from a seeded generator whose seed is printed (pytest shows it when a test
fails); POSTWRIGHT_RELIABILITY_SEED=<n> replays a run.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

MODE_VARIABLE = "POSTWRIGHT_RELIABILITY"
SEED_VARIABLE = "POSTWRIGHT_RELIABILITY_SEED"
LONG = os.environ.get(MODE_VARIABLE, "") == "long"

T = TypeVar("T")


def pick(quick: T, long: T) -> T:
    """`long` under `make reliability`, else `quick`."""
    return long if LONG else quick


def seeded(name: str) -> random.Random:
    """A generator for one test, seeded from POSTWRIGHT_RELIABILITY_SEED or at random; the
    seed is printed so that a failure can be replayed."""
    given = os.environ.get(SEED_VARIABLE, "")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"{name}: seed {seed} (replay with {SEED_VARIABLE}={seed})")
    return random.Random(seed)
