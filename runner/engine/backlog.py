"""How many received events wait for the engine, kept in memory so reading it costs nothing.

`POST /v1/events` sheds load when this passes its bound, so it is read on every request:
a counter, not a query. It counts the store's whole queue, shared by every replica on one
PostgreSQL: the store's count is read at start-up and again at most once a second by the
engine loop; in between, this process adds the events it stores and subtracts those it
processes (in engine rounds and when a request catches up), and a round that finds the
queue empty sets it exact for this process's own events.
"""

from __future__ import annotations

from datetime import datetime, timedelta

RECOUNT_EVERY = timedelta(seconds=1)


class Backlog:
    """Unprocessed events as this process knows them."""

    def __init__(self) -> None:
        self.count = 0
        self._added = 0  # events stored by this process, ever
        self._counted_at: datetime | None = None

    def added(self, events: int) -> None:
        """`events` were stored for the engine."""
        self.count += events
        self._added += events

    def mark(self) -> int:
        """Taken before the queue is read; handed back to `processed` or `counted`."""
        return self._added

    def processed(self, events: int, *, drained: bool, mark: int) -> None:
        """A round processed `events`; `drained` when it found fewer than it could take.

        A drained queue held nothing stored before `mark`: what is left is at most what was
        added since (events added meanwhile may already be processed: an overestimate for
        one round, never an undercount).
        """
        if drained:
            self.count = self._added - mark
        else:
            self.count = max(0, self.count - events)

    def recount_due(self, now: datetime) -> bool:
        """Whether the store's count should be read again (at start-up, then once a second)."""
        return self._counted_at is None or now - self._counted_at >= RECOUNT_EVERY

    def counted(self, unprocessed: int, *, mark: int, now: datetime) -> None:
        """The store held `unprocessed` events when read after `mark`; those this process
        stored since may or may not be among them, so they are added (an overestimate until
        the next count, never an undercount)."""
        self.count = unprocessed + (self._added - mark)
        self._counted_at = now
