"""How many received events wait for the engine, kept in memory so reading it costs nothing.

`POST /v1/events` sheds load when this passes its bound, so it is read on every request:
a counter the ingest raises and the worker lowers, not a query. It is this process's
view: after a restart, or with replicas sharing PostgreSQL, it undercounts or overcounts
until the worker next finds the queue empty, when it becomes exact again.
"""

from __future__ import annotations


class Backlog:
    """Unprocessed events as this process knows them."""

    def __init__(self) -> None:
        self.count = 0
        self._added = 0  # events stored by this process, ever

    def added(self, events: int) -> None:
        """`events` were stored for the engine."""
        self.count += events
        self._added += events

    def mark(self) -> int:
        """Taken before a round reads the queue; handed back to `processed`."""
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
