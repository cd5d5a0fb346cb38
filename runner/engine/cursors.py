"""Where a sweep of one automation left off, kept in meta: the instant checked up to, the
firing a sweep in progress is for, and the last subscriber it handled. A tick handles a
bounded page of subscribers and goes on from the cursor at the next tick."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.core.records import Subscriber
from runner.engine.catalog import TICK, Live
from runner.store.base import ReadTx, WriteTx


@dataclass
class Cursor:
    """How far a sweep of one automation has come."""

    checked: datetime  # every instant up to here has been looked at
    target: datetime | None = None  # the instant a sweep in progress is for
    after_id: int = 0  # the last subscriber that sweep handled


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


def next_page(tx: WriteTx, cursor: Cursor, left: list[int]) -> list[Subscriber]:
    """The next page of the sweep, charged to the tick's budget."""
    if left[0] <= 0:
        return []
    wanted = left[0]
    page = tx.subscribers(cursor.after_id, wanted)
    left[0] -= len(page)
    if page:
        assert page[-1].id is not None
        cursor.after_id = page[-1].id
    if len(page) < wanted:  # a short page: every subscriber has been looked at
        cursor.target = None
    return page
