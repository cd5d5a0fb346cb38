"""The sender's side of `WriteTx` on SQLite: claims with a lease token, the in-flight mark,
and the end of a claim, each guarded in SQL by the token (fencing)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from runner.core.records import CancelReason, PendingSend, SendStatus
from runner.store import sqlite_rows as rows
from runner.store.sqlite_read import SqliteReadTx
from runner.store.sqlite_rows import marks

# Leases that expired are resumed: their sender crashed or lost the lease. A resumed send
# keeps its `in_flight` mark, so the new sender knows a request may have gone out.
_CLAIM_DUE = """
UPDATE pending_sends
SET status = 'claimed', lease_token = :token, lease_until = :lease_until, updated_at = :now
WHERE id IN (
    SELECT id FROM pending_sends
    WHERE due_at <= :now AND status IN ('pending', 'claimed')
        AND (status = 'pending' OR lease_until < :now)
    ORDER BY due_at, id LIMIT :limit
)
RETURNING *
"""

# The same lease on named sends (the members of a batch request to repeat together).
_CLAIM_NAMED = """
UPDATE pending_sends
SET status = 'claimed', lease_token = ?, lease_until = ?, updated_at = ?
WHERE id IN ({ids}) AND due_at <= ? AND status IN ('pending', 'claimed')
    AND (status = 'pending' OR lease_until < ?)
RETURNING *
"""

# A stop, a delete or a subscriber's deletion: sends no provider was handed yet are
# cancelled; the requests in flight are halted, to be recorded when they are answered.
_END_UNSENT = """
UPDATE pending_sends
SET status = 'cancelled', reason = :reason, updated_at = :now, lease_token = NULL,
    lease_until = NULL, in_flight = NULL
WHERE {owner} = :owner AND (status = 'pending' OR (status = 'claimed' AND in_flight IS NULL))
"""
_HALT_IN_FLIGHT = """
UPDATE pending_sends SET halted = :reason
WHERE {owner} = :owner AND status = 'claimed' AND in_flight IS NOT NULL AND halted IS NULL
"""

_CHUNK = 500  # ids per IN list, well under SQLite's bound-variable limit
# A provider attempt was made when a claim ends in one of these states.
_ATTEMPTED = frozenset({SendStatus.SENT, SendStatus.FAILED, SendStatus.OUTCOME_UNKNOWN})


class SqliteClaimsTx(SqliteReadTx):
    """Claim, mark in flight, finish and retry sends inside the writer's transaction."""

    def claim_due(
        self, now: datetime, limit: int, lease_until: datetime, token: str
    ) -> list[PendingSend]:
        """Lease up to `limit` sends due at `now` (PENDING, or CLAIMED with an expired lease)."""
        found = self._all_named(
            _CLAIM_DUE,
            {
                "token": token,
                "lease_until": rows.time_text(lease_until),
                "now": rows.time_text(now),
                "limit": limit,
            },
        )
        # RETURNING gives rows in no promised order.
        return sorted((rows.send_of(r) for r in found), key=lambda s: (s.due_at, s.id))

    def claim_sends(
        self, send_ids: Collection[str], now: datetime, lease_until: datetime, token: str
    ) -> list[PendingSend]:
        """Lease those of `send_ids` that `claim_due` could lease now (due, not held)."""
        ids, when = list(send_ids), rows.time_text(now)
        found: list[sqlite3.Row] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            found += self.db.execute(
                _CLAIM_NAMED.format(ids=marks(len(chunk))),
                (token, rows.time_text(lease_until), when, *chunk, when, when),
            ).fetchall()
        return sorted((rows.send_of(r) for r in found), key=lambda s: (s.due_at, s.id))

    def _all_named(self, sql: str, args: dict[str, object]) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    def mark_in_flight(self, token: str, requests: Mapping[str, dict[str, Any] | None]) -> set[str]:
        """Store each send's request before it is written (None: clear the mark); the ids
        still claimed under `token` (only those may be sent)."""
        marked: set[str] = set()
        for send_id, request in requests.items():
            changed = self.db.execute(
                "UPDATE pending_sends SET in_flight = ?"
                " WHERE id = ? AND lease_token = ? AND status = 'claimed'",
                (rows.opt_dumps(request), send_id, token),
            ).rowcount
            if changed == 1:
                marked.add(send_id)
        return marked

    def end_automation_sends(self, automation_id: str, reason: CancelReason, now: datetime) -> int:
        """Cancel the unsent sends of an automation, halt those in flight; how many cancelled."""
        return self._end_sends("automation_id", automation_id, reason, now)

    def end_subscriber_sends(self, subscriber_id: int, reason: CancelReason, now: datetime) -> int:
        """Cancel the unsent sends of a subscriber, halt those in flight; how many cancelled."""
        return self._end_sends("subscriber_id", subscriber_id, reason, now)

    def _end_sends(self, owner: str, value: object, reason: CancelReason, now: datetime) -> int:
        args = {"owner": value, "reason": reason.value, "now": rows.time_text(now)}
        self.db.execute(_HALT_IN_FLIGHT.format(owner=owner), args)
        return self.db.execute(_END_UNSENT.format(owner=owner), args).rowcount

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
        """End a claim in a final status; False when the lease token no longer matches."""
        if to in (SendStatus.CLAIMED, SendStatus.PENDING):
            raise ValueError(
                f"a claim does not end in {to.value}: use reschedule(token=...) or retry_claim"
            )
        return (
            self.db.execute(
                "UPDATE pending_sends SET status = ?, reason = ?, updated_at = ?,"
                " last_error = IFNULL(?, last_error), attempts = attempts + ?,"
                " lease_token = NULL, lease_until = NULL, in_flight = NULL"
                " WHERE id = ? AND lease_token = ? AND status = 'claimed'",
                (
                    to.value,
                    reason,
                    rows.time_text(now),
                    last_error,
                    int(to in _ATTEMPTED),
                    send_id,
                    token,
                ),
            ).rowcount
            == 1
        )

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
        """Put a claimed send back to PENDING for a retry at `due_at`, counting the attempt;
        `in_flight` is the request the retry must repeat (None: render it afresh)."""
        return (
            self.db.execute(
                "UPDATE pending_sends SET status = 'pending', due_at = ?, updated_at = ?,"
                " last_error = ?, attempts = attempts + 1, lease_token = NULL, lease_until = NULL,"
                " in_flight = ? WHERE id = ? AND lease_token = ? AND status = 'claimed'",
                (
                    rows.time_text(due_at),
                    rows.time_text(now),
                    last_error,
                    rows.opt_dumps(in_flight),
                    send_id,
                    token,
                ),
            ).rowcount
            == 1
        )
