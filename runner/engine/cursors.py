"""Where a sweep of one automation left off, kept in meta: the instant checked up to, the
firing a sweep in progress is for, and the last subscriber it handled. A tick handles a
bounded page of subscribers and goes on from the cursor at the next tick."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from runner.core.prefilter import Prefilter
from runner.core.records import PendingSend, Subscriber
from runner.engine.catalog import TICK, Live
from runner.store.base import ReadTx, WriteTx
from runner.store.fanout import SweepRow

T = TypeVar("T")


@dataclass
class Cursor:
    """How far a sweep of one automation has come."""

    checked: datetime  # every instant up to here has been looked at
    target: datetime | None = None  # the instant a sweep in progress is for
    after_id: int = 0  # the last subscriber that sweep handled


# Subscriber ids a schedule page scans at most: a selective audience tested in SQL finds few
# rows per page, and this bounds how long one page holds the single writer.
SCAN_WINDOW = 50_000
# Subscribers per page: one statement reads them, one writes their entries, one their sends.
PAGE = 1000


@dataclass
class Budget:
    """What one tick may still look at, shared by the automations it sweeps."""

    left: int  # subscribers a tick may still handle
    deadline: float | None = None  # time.monotonic() after which no further page starts
    more: bool = False  # a sweep was left unfinished: the next tick should come soon
    pages: int = 0  # pages read so far (the first always may start: every tick progresses)

    def spent(self) -> bool:
        """Whether the tick should start no further page."""
        if self.left <= 0:
            return True
        late = self.deadline is not None and time.monotonic() >= self.deadline
        return late and self.pages > 0

    def note(self, cursor: Cursor) -> None:
        """Remember whether the sweep of `cursor` still has subscribers to look at."""
        self.more = self.more or cursor.target is not None


def load_cursor(tx: ReadTx, key: str, live: Live) -> Cursor:
    """The cursor kept under `key`; a new one starts just before the automation started."""
    text = tx.meta(key)
    if text is None:  # from just before the start: an instant at the start moment counts
        assert live.row.started_at is not None
        return Cursor(live.row.started_at - TICK)
    data: dict[str, Any] = json.loads(text)
    target = data.get("target")
    return Cursor(
        datetime.fromisoformat(data["checked"]),
        datetime.fromisoformat(target) if target else None,
        int(data.get("after_id", 0)),
    )


def save_cursor(tx: WriteTx, key: str, cursor: Cursor) -> None:
    """Keep the cursor under `key`."""
    data = {
        "checked": cursor.checked.isoformat(),
        "target": cursor.target.isoformat() if cursor.target else None,
        "after_id": cursor.after_id,
    }
    tx.set_meta(key, json.dumps(data))


def next_page(tx: WriteTx, cursor: Cursor, budget: Budget) -> list[Subscriber]:
    """The next page of the sweep, charged to the tick's budget."""
    if budget.left <= 0:
        return []
    wanted = min(budget.left, PAGE)
    budget.pages += 1
    page = tx.subscribers(cursor.after_id, wanted)
    budget.left -= len(page)
    if page:
        assert page[-1].id is not None
        cursor.after_id = page[-1].id
    if len(page) < wanted:  # a short page: every subscriber has been looked at
        cursor.target = None
    return page


def next_window(
    tx: WriteTx, cursor: Cursor, budget: Budget, tests: tuple[Prefilter, ...]
) -> list[Subscriber]:
    """The next page of a sweep of live, unsuppressed subscribers passing `tests` (in SQL),
    scanning at most SCAN_WINDOW ids past the cursor; charged to the tick's budget."""
    return _window(tx, cursor, budget, tests, tx.sweep_page, _subscriber_id)


def next_rows(
    tx: WriteTx, cursor: Cursor, budget: Budget, tests: tuple[Prefilter, ...]
) -> list[SweepRow]:
    """`next_window` as undecoded rows (`sweep_rows`)."""
    return _window(tx, cursor, budget, tests, tx.sweep_rows, _row_id)


def _subscriber_id(subscriber: Subscriber) -> int:
    assert subscriber.id is not None
    return subscriber.id


def _row_id(row: SweepRow) -> int:
    return row[0]


def fan_out_window(
    tx: WriteTx,
    cursor: Cursor,
    budget: Budget,
    tests: tuple[Prefilter, ...],
    template: PendingSend,
) -> list[SweepRow]:
    """`next_rows`'s page entered by the store itself (`fan_out_page`): each subscriber gets
    an entry and a send like `template`; returns the rows it left to the caller (`held`)."""
    if budget.left <= 0:
        return []
    wanted, until = min(budget.left, PAGE), cursor.after_id + SCAN_WINDOW
    budget.pages += 1
    page = tx.fan_out_page(template, cursor.after_id, until, wanted, tests)
    _advance(tx, cursor, budget, page.count, page.last_id, wanted, until)
    return page.held


def _window(
    tx: WriteTx,
    cursor: Cursor,
    budget: Budget,
    tests: tuple[Prefilter, ...],
    fetch: Callable[[int, int, int, tuple[Prefilter, ...]], list[T]],
    ident: Callable[[T], int],
) -> list[T]:
    if budget.left <= 0:
        return []
    wanted, until = min(budget.left, PAGE), cursor.after_id + SCAN_WINDOW
    budget.pages += 1
    page = fetch(cursor.after_id, until, wanted, tests)
    _advance(tx, cursor, budget, len(page), ident(page[-1]) if page else None, wanted, until)
    return page


def _advance(
    tx: WriteTx,
    cursor: Cursor,
    budget: Budget,
    count: int,
    last_id: int | None,
    wanted: int,
    until: int,
) -> None:
    """Charge a page of `count` subscribers (the last `last_id`) of the ids up to `until`
    to the budget and move the cursor past it: a full page ends at its last subscriber,
    a short one at `until`, and the sweep is over once `until` passes the last id."""
    budget.left -= count
    if count == wanted and last_id is not None:
        cursor.after_id = last_id
        return
    cursor.after_id = until  # every id up to `until` has been looked at
    if until >= tx.last_subscriber_id():
        cursor.target = None
