"""apply_isolated: a batch in one savepoint, and the same result as one savepoint per item
when an item fails (its work undone alone, reported once, in order)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.core.clock import FakeClock
from runner.engine.isolated import apply_isolated
from runner.store import open_store
from runner.store.base import WriteTx

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def run(tmp_path: Path, bad: set[int]) -> tuple[list[tuple[int, int]], list[int], dict[int, str]]:
    """Apply items 1..4 (each writes a meta key, then raises when in `bad`): the results,
    the failures reported and what the store kept."""
    failures: list[int] = []

    def work(tx: WriteTx) -> list[tuple[int, int]]:
        def apply(item: int) -> int:
            tx.set_meta(f"item-{item}", "written")
            if item in bad:
                raise ValueError(f"item {item} is bad")
            return item * 10

        return apply_isolated(tx, [1, 2, 3, 4], apply, lambda item, _: failures.append(item))

    async def main() -> tuple[list[tuple[int, int]], dict[int, str]]:
        store = open_store(f"sqlite:///{tmp_path / 'runner.db'}", FakeClock(T0))
        try:
            done = await store.write(work)
            kept = await store.read(lambda tx: {n: tx.meta(f"item-{n}") for n in range(1, 5)})
        finally:
            await store.close()
        return done, {n: value for n, value in kept.items() if value is not None}

    done, kept = asyncio.run(main())
    return done, failures, kept


def test_a_batch_without_failures_keeps_every_item_and_its_result(tmp_path: Path) -> None:
    done, failures, kept = run(tmp_path, bad=set())
    assert done == [(1, 10), (2, 20), (3, 30), (4, 40)]
    assert failures == [] and sorted(kept) == [1, 2, 3, 4]


@pytest.mark.parametrize("bad", [{1}, {2, 4}, {1, 2, 3, 4}])
def test_failing_items_are_undone_alone_and_reported_once_in_order(
    tmp_path: Path, bad: set[int]
) -> None:
    done, failures, kept = run(tmp_path, bad)
    good = [n for n in range(1, 5) if n not in bad]
    assert done == [(n, n * 10) for n in good]
    assert failures == sorted(bad)
    assert sorted(kept) == good
