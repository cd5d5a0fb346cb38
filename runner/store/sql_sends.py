"""The part of `WriteTx` written once for both stores: pending sends, the end of claims
and messages."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from runner.core.records import CancelReason, Message, PendingSend, SendStatus, normalise_email
from runner.store.claims import EmailEvent
from runner.store.rows import dumps, opt_dumps
from runner.store.sql_read import SqlReadTx
from runner.store.write_queries import WriteQueries

# A provider attempt was made when a claim ends in one of these states.
_ATTEMPTED = frozenset({SendStatus.SENT, SendStatus.FAILED, SendStatus.OUTCOME_UNKNOWN})


class SqlSendsTx(SqlReadTx):
    """State changes of sends, each guarded in SQL, over the dialect's rendered `writes`."""

    writes: WriteQueries

    def insert_pending(self, send: PendingSend) -> None:
        """Store a new pending send; inserting an id again changes nothing (safe retries)."""
        self._run(self.writes.insert_pending, self.dialect.codec.send_values(send))

    def insert_pendings(self, sends: Sequence[PendingSend]) -> None:
        """Store many new pending sends with one statement (ids already stored are kept)."""
        self._insert_rows(self.writes.insert_pending, self.dialect.codec.send_rows(sends))

    def insert_pendings_like(
        self, template: PendingSend, varying: Sequence[tuple[str, int, str, datetime]]
    ) -> None:
        """`insert_pendings` of sends equal to `template`, a new series' first send, but for
        their (id, subscriber id, email, due time): the shared values are encoded once."""
        if template.series_id != template.id:
            raise ValueError("insert_pendings_like() takes the first send of a new series")
        values = self.dialect.codec.send_values(template)
        # The columns of SEND_COLUMNS: id, automation, subscriber, email, due, then shared
        # ones up to series_id (the send's own id), then shared ones again.
        automation, middle, tail = values[1], values[5:9], values[10:]
        write_time, dues = self.dialect.write_time, {template.due_at: values[4]}
        rows = []
        for send_id, subscriber_id, email, due_at in varying:
            due = dues.get(due_at)
            if due is None:
                due = dues[due_at] = write_time(due_at)
            rows.append((send_id, automation, subscriber_id, email, due, *middle, send_id, *tail))
        self._insert_rows(self.writes.insert_pending, rows)

    def set_status(
        self,
        send_ids: Sequence[str],
        to: SendStatus,
        now: datetime,
        *,
        from_statuses: Collection[SendStatus],
        reason: str | None = None,
    ) -> int:
        """Move sends to `to` only from `from_statuses` (guarded in SQL); returns rows changed."""
        if to is SendStatus.CLAIMED:
            raise ValueError("sends are claimed with claim_due, which sets a lease")
        origins = [SendStatus(s).value for s in from_statuses]
        if not origins:
            return 0
        of_origins, origin_args = self.dialect.one_of("status", origins)
        when = self.dialect.write_time(now)
        changed = 0
        for batch in self.dialect.batches(send_ids):
            of_ids, id_args = self.dialect.one_of("id", batch)
            changed += self._run(
                f"UPDATE pending_sends SET status = {self.dialect.positional},"
                f" reason = {self.dialect.positional}, updated_at = {self.dialect.positional},"
                f" lease_token = NULL, lease_until = NULL WHERE {of_ids} AND {of_origins}",
                (to.value, reason, when, *id_args, *origin_args),
            )
        return changed

    def reschedule(
        self, send_id: str, due_at: datetime, now: datetime, *, token: str | None = None
    ) -> bool:
        """Set a PENDING send's due time; with `token`, also return a held claim to PENDING."""
        due, when = self.dialect.write_time(due_at), self.dialect.write_time(now)
        if token is None:
            return self._run(self.writes.reschedule, (due, when, send_id)) == 1
        return self._run(self.writes.reschedule_claimed, (due, when, send_id, token)) == 1

    def send_now(self, send_id: str, now: datetime) -> bool:
        """Make a PENDING send due at `now`, skipping its send window."""
        when = self.dialect.write_time(now)
        return self._run(self.writes.send_now, (when, when, send_id)) == 1

    def end_automation_sends(self, automation_id: str, reason: CancelReason, now: datetime) -> int:
        """Cancel the unsent sends of an automation, halt those in flight; how many cancelled."""
        return self._end_sends("automation_id", automation_id, reason, now)

    def end_subscriber_sends(self, subscriber_id: int, reason: CancelReason, now: datetime) -> int:
        """Cancel the unsent sends of a subscriber, halt those in flight; how many cancelled."""
        return self._end_sends("subscriber_id", subscriber_id, reason, now)

    def _end_sends(self, owner: str, value: object, reason: CancelReason, now: datetime) -> int:
        args = {"owner": value, "reason": reason.value, "now": self.dialect.write_time(now)}
        self._run(self.writes.halt_in_flight[owner], args)
        return self._run(self.writes.end_unsent[owner], args)

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
        attempted = int(to in _ATTEMPTED)
        when = self.dialect.write_time(now)
        args = (to.value, reason, when, last_error, attempted, send_id, token)
        return self._run(self.writes.finish_claim, args) == 1

    def finish_claims(
        self, send_ids: Sequence[str], token: str, to: SendStatus, now: datetime
    ) -> set[str]:
        """`finish_claim` of many sends ending alike (no reason, no error), one statement per
        batch of ids; the ids whose claim it ended (the others' lease was taken over)."""
        if to in (SendStatus.CLAIMED, SendStatus.PENDING):
            raise ValueError(
                f"a claim does not end in {to.value}: use reschedule(token=...) or retry_claim"
            )
        mark = self.dialect.positional
        when, attempted = self.dialect.write_time(now), int(to in _ATTEMPTED)
        finished: set[str] = set()
        for batch in self.dialect.batches(send_ids):
            of_ids, id_args = self.dialect.one_of("id", batch)
            found = self._all(
                f"UPDATE pending_sends SET status = {mark}, reason = NULL, updated_at = {mark},"
                f" attempts = attempts + {mark}, lease_token = NULL, lease_until = NULL,"
                f" in_flight = NULL WHERE {of_ids} AND lease_token = {mark}"
                " AND status = 'claimed' RETURNING id",
                to.value,
                when,
                attempted,
                *id_args,
                token,
            )
            finished.update(row["id"] for row in found)
        return finished

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
        write_time = self.dialect.write_time
        args = (
            write_time(due_at),
            write_time(now),
            last_error,
            opt_dumps(in_flight),
            send_id,
            token,
        )
        return self._run(self.writes.retry_claim, args) == 1

    def insert_message(self, message: Message) -> None:
        """Store a message handed to a provider; inserting an id again changes nothing."""
        self._run(self.writes.insert_message, self.dialect.codec.message_values(message))

    def set_message_status(self, message_id: str, status: str) -> None:
        """Mark a message bounced or failed."""
        self._run(self.writes.set_message_status, (status, message_id))

    def insert_messages(self, messages: Sequence[Message]) -> None:
        """`insert_message` of many messages (one statement, many rows where the store can)."""
        values = self.dialect.codec.message_values
        self._insert_rows(self.writes.insert_message, [values(m) for m in messages])

    def add_email_events(self, events: Sequence[EmailEvent]) -> None:
        """Store internal events of sends (no client id, not derived) in the order given."""
        flag, write_time = self.dialect.flag, self.dialect.write_time
        rows = [
            (e.type, normalise_email(e.email), dumps(e.data), write_time(e.at), flag(e.processed))
            for e in events
        ]
        self._insert_rows(self.writes.insert_email_event, rows)
