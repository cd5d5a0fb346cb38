"""The write statements both stores share, written once with SQLite's placeholders."""

from __future__ import annotations

from runner.store.dialect import Dialect
from runner.store.rows import LIFT_COLUMNS, MESSAGE_COLUMNS, SEND_COLUMNS

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
OWNERS = ("automation_id", "subscriber_id")


def _placeholders(columns: str) -> str:
    return ", ".join("?" for _ in columns.split(","))


class WriteQueries:
    """Every shared write statement, rendered once for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        r = dialect.render
        self.unprocessed_events = r(
            f"SELECT * FROM events WHERE {dialect.unprocessed} ORDER BY seq LIMIT ?"
        )
        self.insert_event = r(
            "INSERT INTO events (client_id, type, email, fields, groups, data, occurred_at,"
            " received_at, derived_from, processed)"
            " VALUES (NULL, ?, ?, NULL, NULL, ?, NULL, ?, ?, ?) RETURNING seq"
        )
        # Internal events of sends, many per statement (no seq read back).
        self.insert_email_event = r(
            "INSERT INTO events (client_id, type, email, fields, groups, data, occurred_at,"
            " received_at, derived_from, processed)"
            " VALUES (NULL, ?, ?, NULL, NULL, ?, NULL, ?, NULL, ?)"
        )
        self.insert_events = r(
            "INSERT INTO events (seq, client_id, type, email, fields, groups, data, occurred_at,"
            " received_at, derived_from, processed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, FALSE)"
        )
        self.insert_event_ids = r(
            "INSERT INTO event_ids (id, body_hash, seq, received_at) VALUES (?, ?, ?, ?)"
        )
        self.mark_failed = r("UPDATE events SET processed = TRUE, error = ? WHERE seq = ?")
        self.save_automation = r(
            "INSERT INTO automations (id, revision, status, source, templates, path, commit_sha,"
            " applied_at, started_at, stopped_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET revision = excluded.revision,"
            " status = excluded.status, source = excluded.source, templates = excluded.templates,"
            " path = excluded.path, commit_sha = excluded.commit_sha,"
            " applied_at = excluded.applied_at, started_at = excluded.started_at,"
            " stopped_at = excluded.stopped_at"
        )
        self.add_history = r(
            "INSERT INTO history (automation_id, at, kind, previous, value, commit_sha, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self.record_entry = r(
            "INSERT INTO entries (automation_id, subscriber_id, first_at, last_at, count)"
            " VALUES (?, ?, ?, ?, 1) ON CONFLICT (automation_id, subscriber_id)"
            " DO UPDATE SET last_at = excluded.last_at, count = entries.count + 1 RETURNING *"
        )
        self.record_entries = r(
            "INSERT INTO entries (automation_id, subscriber_id, first_at, last_at, count)"
            " VALUES (?, ?, ?, ?, 1) ON CONFLICT (automation_id, subscriber_id)"
            " DO UPDATE SET last_at = excluded.last_at, count = entries.count + 1"
        )
        self.enter_first = r(
            "INSERT INTO entries (automation_id, subscriber_id, first_at, last_at, count)"
            " VALUES (?, ?, ?, ?, 1) ON CONFLICT (automation_id, subscriber_id) DO NOTHING"
        )
        self.insert_pending = r(
            f"INSERT INTO pending_sends ({SEND_COLUMNS})"
            f" VALUES ({_placeholders(SEND_COLUMNS)}) ON CONFLICT (id) DO NOTHING"
        )
        self.reschedule = r(
            "UPDATE pending_sends SET due_at = ?, updated_at = ?"
            " WHERE id = ? AND status = 'pending'"
        )
        self.reschedule_claimed = r(
            "UPDATE pending_sends SET due_at = ?, updated_at = ?, status = 'pending',"
            " lease_token = NULL, lease_until = NULL"
            " WHERE id = ? AND status = 'claimed' AND lease_token = ?"
        )
        self.send_now = r(
            "UPDATE pending_sends SET due_at = ?, updated_at = ?, skip_window = TRUE"
            " WHERE id = ? AND status = 'pending'"
        )
        self.insert_message = r(
            f"INSERT INTO messages ({MESSAGE_COLUMNS})"
            f" VALUES ({_placeholders(MESSAGE_COLUMNS)}) ON CONFLICT (id) DO NOTHING"
        )
        self.set_message_status = r("UPDATE messages SET status = ? WHERE id = ?")
        self.claim_once = r("INSERT INTO once (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        self.set_meta = r(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self.delete_meta = r("DELETE FROM meta WHERE key = ?")
        self.purge_event_ids = r("DELETE FROM event_ids WHERE received_at < ?")
        self.finish_claim = r(
            "UPDATE pending_sends SET status = ?, reason = ?, updated_at = ?,"
            " last_error = COALESCE(?, last_error), attempts = attempts + ?,"
            " lease_token = NULL, lease_until = NULL, in_flight = NULL"
            " WHERE id = ? AND lease_token = ? AND status = 'claimed'"
        )
        self.retry_claim = r(
            "UPDATE pending_sends SET status = 'pending', due_at = ?, updated_at = ?,"
            " last_error = ?, attempts = attempts + 1, lease_token = NULL, lease_until = NULL,"
            " in_flight = ? WHERE id = ? AND lease_token = ? AND status = 'claimed'"
        )
        self.add_suppression_lift = r(
            f"INSERT INTO suppression_lifts ({LIFT_COLUMNS}) VALUES ({_placeholders(LIFT_COLUMNS)})"
        )
        # The rewrites of erasure.
        self.rewrite_events = r(
            "UPDATE events SET email = ?, client_id = ?, fields = ?, groups = ?, data = ?"
            " WHERE seq = ?"
        )
        self.rename_event_ids = r("UPDATE event_ids SET id = ? WHERE seq = ? AND id <> ?")
        self.rewrite_sends = r(
            "UPDATE pending_sends SET email = ?, trigger_event = ?, overrides = ?,"
            " last_error = ? WHERE id = ?"
        )
        self.rewrite_messages = r(
            "UPDATE messages SET to_address = ?, subject = ?, html = ?, text = ?,"
            " headers = ? WHERE id = ?"
        )
        self.rewrite_message_events = r(
            "UPDATE message_events SET url = ? WHERE provider = ? AND provider_event_id = ?"
        )
        self.end_unsent = {o: r(_END_UNSENT.format(owner=o)) for o in OWNERS}
        self.halt_in_flight = {o: r(_HALT_IN_FLIGHT.format(owner=o)) for o in OWNERS}
