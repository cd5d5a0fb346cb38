"""The sender's side of `WriteTx` on SQLite: claims with a lease token and the in-flight
mark, each guarded in SQL by the token (fencing); the end of a claim is shared
(runner.store.sql_sends)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from runner.core.records import PendingSend
from runner.store import sqlite_rows as rows
from runner.store.claims import JsonText
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

_CHUNK = 500  # ids per IN list, well under SQLite's bound-variable limit


class SqliteClaimsTx(SqliteReadTx):
    """Claim sends and mark them in flight inside the writer's transaction."""

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
        return sorted((rows.CODEC.send_of(r) for r in found), key=lambda s: (s.due_at, s.id))

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
        return sorted((rows.CODEC.send_of(r) for r in found), key=lambda s: (s.due_at, s.id))

    def _all_named(self, sql: str, args: dict[str, object]) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    def mark_in_flight(
        self, token: str, requests: Mapping[str, dict[str, Any] | JsonText | None]
    ) -> set[str]:
        """Store each send's request before it is written (None: clear the mark); the ids
        still claimed under `token` (only those may be sent)."""
        marked: set[str] = set()
        for send_id, request in requests.items():
            changed = self.db.execute(
                "UPDATE pending_sends SET in_flight = ?"
                " WHERE id = ? AND lease_token = ? AND status = 'claimed'",
                (_text(request), send_id, token),
            ).rowcount
            if changed == 1:
                marked.add(send_id)
        return marked


def _text(request: dict[str, Any] | JsonText | None) -> str | None:
    """The stored text of an in-flight mark: encoded here unless it comes encoded."""
    return request if isinstance(request, JsonText) else rows.opt_dumps(request)
