"""A schedule firing's page entered in the database: the subscribers of the page are chosen,
entered and given their pending send by the store's own statements, without their rows
travelling to the runner and back (docs/performance.md, "Schedule fan-out")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runner.core.prefilter import Prefilter
from runner.core.records import PendingSend

# A subscriber of a sweep, undecoded: id, email, fields and groups (JSON text).
SweepRow = tuple[int, str, str, str]


@dataclass(frozen=True)
class FanOutPage:
    """What `fan_out_page` did: the subscribers the page held (entered or `held`), the last
    one's id (None: none), and those left to the caller because their fields hold an escaped
    NUL, which a store's JSON reading may cut short (`decided` in runner/core/prefilter.py)."""

    count: int
    last_id: int | None
    held: list[SweepRow] = field(default_factory=list)


class FanOutTx(Protocol):
    """Pages of a firing written by the store itself, inside one write transaction."""

    def fan_out_page(
        self,
        template: PendingSend,
        after_id: int,
        until_id: int,
        limit: int,
        tests: Sequence[Prefilter],
    ) -> FanOutPage:
        """The page `sweep_rows(after_id, until_id, limit, tests)` would read, entered in
        the store: each subscriber gets an entry of `template.automation_id` at
        `template.trigger_at` and a pending send equal to `template` (a new series' first
        send) but for a new id, the subscriber and their email; the rows whose fields hold
        an escaped NUL are returned in `held` instead, untouched. Only for firings whose
        audience the tests decide and whose sends share one due time."""
