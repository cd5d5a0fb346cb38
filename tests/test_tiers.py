"""The test tiers of tests/conftest.py: every listed module exists, and the rules place a test
by its module and the fixtures it uses."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import E2E_MODULES, UNIT_MODULES, tier_of

TESTS = Path(__file__).resolve().parent


def test_every_listed_module_exists_and_has_one_tier() -> None:
    existing = {path.stem for path in TESTS.glob("test_*.py")}
    assert sorted((UNIT_MODULES | E2E_MODULES) - existing) == []
    assert sorted(UNIT_MODULES & E2E_MODULES) == []


def test_a_test_is_placed_by_its_module_and_fixtures() -> None:
    assert tier_of("test_timing", "tests", ["request"]) == "unit"
    assert tier_of("test_timing", "tests", ["repo"]) == "integration"  # a git repository
    assert tier_of("test_store_sqlite", "tests", []) == "integration"  # the default
    assert tier_of("test_server", "tests", []) == "e2e"
    assert tier_of("test_load", "reliability", []) == "e2e"
