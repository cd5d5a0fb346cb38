"""Applying a batch of items in one transaction, where one item's failure undoes its own work
only.

Optimistic: the whole batch runs under one savepoint, since a failing item is rare and two
statements per item (SAVEPOINT, RELEASE) are not. When an item raises, the batch is undone and
run again, each item under its own savepoint, so the result is the same as isolating every item
from the start: the failing item's work is undone, `failed` is told about it, the others stay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from runner.store.base import WriteTx
from runner.store.errors import TransactionAborted

Item = TypeVar("Item")
R = TypeVar("R")


def apply_isolated(
    tx: WriteTx,
    items: Sequence[Item],
    apply: Callable[[Item], R],
    failed: Callable[[Item, Exception], None],
) -> list[tuple[Item, R]]:
    """Apply `apply` to each of `items` in order; each item that raises is undone alone and
    given to `failed` (in the same order as if each had its own savepoint). Returns the items
    that succeeded with their results. TransactionAborted (the database ended the whole
    transaction) goes on to the caller.

    `apply` must depend only on the transaction and its item: after a failure the items are
    applied again from the batch's start.
    """
    if not items:
        return []
    try:
        with tx.savepoint():
            return [(item, apply(item)) for item in items]
    except TransactionAborted:
        raise
    except Exception:
        pass
    done: list[tuple[Item, R]] = []
    for item in items:
        try:
            with tx.savepoint():
                result = apply(item)
        except TransactionAborted:
            raise
        except Exception as error:
            failed(item, error)
            continue
        done.append((item, result))
    return done
