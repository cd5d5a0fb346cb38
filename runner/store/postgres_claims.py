"""The sender's side of `WriteTx` on PostgreSQL: claims with a lease token (skipping rows
another replica is claiming) and the in-flight mark, each guarded in SQL by the token
(fencing); the end of a claim is shared (runner.store.sql_sends)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from runner.core.records import PendingSend
from runner.store import postgres_rows as rows
from runner.store.claims import JsonText
from runner.store.postgres_read import PgReadTx

# Leases that expired are resumed: their sender crashed or lost the lease. A resumed send
# keeps its `in_flight` mark, so the new sender knows a request may have gone out. Rows
# another replica is claiming right now are skipped, never waited for nor claimed twice:
# READ COMMITTED re-checks the WHERE clause on the locked row before updating it.
_CLAIM_DUE = f"""
WITH due AS (
    SELECT id FROM pending_sends
    WHERE due_at <= %(now)s AND status IN ('pending', 'claimed')
        AND (status = 'pending' OR lease_until < %(now)s)
    ORDER BY due_at, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pending_sends p
SET status = 'claimed', lease_token = %(token)s, lease_until = %(lease_until)s,
    updated_at = %(now)s
FROM due WHERE p.id = due.id
RETURNING {", ".join(f"p.{c.strip()}" for c in rows.SEND_COLUMNS.split(","))}
"""

# The same lease on named sends (the members of a batch request to repeat together).
_CLAIM_NAMED = f"""
WITH wanted AS (
    SELECT id FROM pending_sends
    WHERE id = ANY(%(ids)s) AND due_at <= %(now)s AND status IN ('pending', 'claimed')
        AND (status = 'pending' OR lease_until < %(now)s)
    FOR UPDATE SKIP LOCKED
)
UPDATE pending_sends p
SET status = 'claimed', lease_token = %(token)s, lease_until = %(lease_until)s,
    updated_at = %(now)s
FROM wanted WHERE p.id = wanted.id
RETURNING {", ".join(f"p.{c.strip()}" for c in rows.SEND_COLUMNS.split(","))}
"""

# One statement for a whole batch: a replica that took a send over (another token) keeps it.
_MARK_IN_FLIGHT = """
UPDATE pending_sends p SET in_flight = m.request
FROM unnest(%s::text[], %s::text[]) AS m(id, request)
WHERE p.id = m.id AND p.lease_token = %s AND p.status = 'claimed'
RETURNING p.id
"""


class PgClaimsTx(PgReadTx):
    """Claim sends and mark them in flight inside one transaction."""

    def claim_due(
        self, now: datetime, limit: int, lease_until: datetime, token: str
    ) -> list[PendingSend]:
        """Lease up to `limit` sends due at `now` (PENDING, or CLAIMED with an expired lease)."""
        return self._claimed(
            _CLAIM_DUE,
            {
                "token": token,
                "lease_until": rows.instant(lease_until),
                "now": rows.instant(now),
                "limit": limit,
            },
        )

    def claim_sends(
        self, send_ids: Collection[str], now: datetime, lease_until: datetime, token: str
    ) -> list[PendingSend]:
        """Lease those of `send_ids` that `claim_due` could lease now (due, not held)."""
        if not send_ids:
            return []
        return self._claimed(
            _CLAIM_NAMED,
            {
                "ids": list(send_ids),
                "token": token,
                "lease_until": rows.instant(lease_until),
                "now": rows.instant(now),
            },
        )

    def _claimed(self, sql: str, args: dict[str, object]) -> list[PendingSend]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql, args)
            found = cursor.fetchall()
        # RETURNING gives rows in no promised order.
        return sorted((rows.CODEC.send_of(r) for r in found), key=lambda s: (s.due_at, s.id))

    def mark_in_flight(
        self, token: str, requests: Mapping[str, dict[str, Any] | JsonText | None]
    ) -> set[str]:
        """Store each send's request before it is written (None: clear the mark); the ids
        still claimed under `token` (only those may be sent)."""
        if not requests:
            return set()
        ids = list(requests)
        texts = [_text(requests[send_id]) for send_id in ids]
        return {row["id"] for row in self._all(_MARK_IN_FLIGHT, ids, texts, token)}


def _text(request: dict[str, Any] | JsonText | None) -> str | None:
    """The stored text of an in-flight mark: encoded here unless it comes encoded."""
    return request if isinstance(request, JsonText) else rows.opt_dumps(request)
