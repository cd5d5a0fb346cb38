"""What can go wrong in a store: every error is a StoreError; StoreUnavailable says the
database failed rather than the work, so the same work may be tried again."""

from __future__ import annotations

from runner.errors import PostwrightError


class StoreError(PostwrightError):
    """The store could not do what was asked."""


class EventConflict(StoreError):
    """An event id was seen before with a different body (HTTP 409)."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event id {event_id!r} was already received with a different body")
        self.event_id = event_id


class TransactionAborted(StoreError):
    """The database ended the whole transaction (a savepoint could not be rolled back to):
    nothing more can run in it, so the caller must not go on as if only its block failed."""


class StoreUnavailable(TransactionAborted):
    """The database, not the work, failed: a lock or statement timed out, the server ended the
    session, the disk is full. The transaction was rolled back as a whole; the same work may
    succeed when tried again, so it says nothing about the data it was given."""
