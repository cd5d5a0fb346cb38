"""The sender's part of a write transaction: claims under a lease token, the in-flight mark,
and how a claim ends. Every write is guarded in SQL by the token (fencing), so a sender whose
lease was taken over can neither send nor finish a send."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from runner.core.records import CancelReason, Message, PendingSend, SendStatus


class JsonText(str):
    """A JSON value already encoded as the store would encode it (sorted keys, no spaces):
    `mark_in_flight` stores the text as it is instead of encoding a value."""


class EmailEvent(NamedTuple):
    """An internal `email.*` event of a send, to store with `add_email_events`."""

    type: str
    email: str
    data: dict[str, object]
    at: datetime  # its received time
    processed: bool  # stored processed: no automation listens to it


class ClaimsTx(Protocol):
    """Claims of due sends inside one write transaction."""

    def claim_due(
        self, now: datetime, limit: int, lease_until: datetime, token: str
    ) -> list[PendingSend]:
        """Lease up to `limit` PENDING sends due at `now` (and CLAIMED ones whose lease expired,
        their `in_flight` mark kept)."""

    def claim_sends(
        self, send_ids: Collection[str], now: datetime, lease_until: datetime, token: str
    ) -> list[PendingSend]:
        """Lease those of `send_ids` that `claim_due` could lease at `now` (the members of a
        batch request that must be repeated together); the others are left alone."""

    def mark_in_flight(
        self, token: str, requests: Mapping[str, dict[str, Any] | JsonText | None]
    ) -> set[str]:
        """Record, before it is written, the request of each send (id -> JSON-like value, or
        its text already encoded):
        it may reach the provider from now on (None clears the mark). Only sends still
        CLAIMED under `token` are marked; returns their ids (the others were taken over and
        must not be sent). The mark stays until the claim ends or a retry replaces it."""

    def finish_claim(
        self,
        send_id: str,
        token: str,
        to: SendStatus,
        now: datetime,
        *,
        reason: str | None = None,
        last_error: str | None = None,
    ) -> bool:
        """End a claim and clear its in-flight mark; refused (False) when the lease token no
        longer matches (fencing).

        `to` is a final status: a claim goes back to PENDING only through `reschedule`
        (with its token) or `retry_claim` (ValueError otherwise).
        """

    def finish_claims(
        self, send_ids: Sequence[str], token: str, to: SendStatus, now: datetime
    ) -> set[str]:
        """`finish_claim` of many sends ending alike in `to` (no reason, no error) at once;
        returns the ids whose claim it ended (the others: fenced, left alone)."""

    def insert_messages(self, messages: Sequence[Message]) -> None:
        """Store messages handed to a provider (an id stored already changes nothing)."""

    def add_email_events(self, events: Sequence[EmailEvent]) -> None:
        """Store internal `email.*` events of sends, in the order given (seqs ascending)."""

    def retry_claim(
        self,
        send_id: str,
        token: str,
        due_at: datetime,
        now: datetime,
        last_error: str,
        *,
        in_flight: dict[str, Any] | None = None,
    ) -> bool:
        """Put a claimed send back to PENDING for a retry at `due_at`, counting the attempt.

        `in_flight` replaces the mark: the request the retry must repeat byte for byte (an
        idempotency key demands the same body), or None to render it afresh.
        """

    def end_automation_sends(self, automation_id: str, reason: CancelReason, now: datetime) -> int:
        """Cancel every send of an automation no provider was handed yet: PENDING ones, and
        CLAIMED ones not marked in flight (their sender finds its lease gone and does not
        send them). A CLAIMED send marked in flight is `halted` with `reason` instead: its
        outcome is recorded when the provider answers, then no retry or repeat follows.
        Returns how many were cancelled."""

    def end_subscriber_sends(self, subscriber_id: int, reason: CancelReason, now: datetime) -> int:
        """`end_automation_sends` for every send of one subscriber."""
