"""The read statements both stores share, written once with SQLite's placeholders."""

from __future__ import annotations

from runner.store.dialect import Dialect


class ReadQueries:
    """Every shared read statement, rendered once for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        r = dialect.render
        self.automations = r("SELECT * FROM automations ORDER BY id")
        self.automation = r("SELECT * FROM automations WHERE id = ?")
        self.history = r("SELECT * FROM history WHERE automation_id = ? ORDER BY at, seq")
        self.status_changes = r("SELECT * FROM history WHERE kind = 'status' ORDER BY at, seq")
        self.subscriber = r("SELECT * FROM subscribers WHERE email = ?")
        self.subscriber_by_id = r("SELECT * FROM subscribers WHERE id = ?")
        self.subscribers_where = r("SELECT * FROM subscribers WHERE ")  # + an IN test
        self.subscribers = r(
            "SELECT * FROM subscribers WHERE id > ? AND deleted_at IS NULL ORDER BY id LIMIT ?"
        )
        self.pending_send = r("SELECT * FROM pending_sends WHERE id = ?")
        self.active_sends = r(
            "SELECT * FROM pending_sends"
            " WHERE subscriber_id = ? AND status IN ('pending', 'claimed')"
        )
        self.and_automation = r(" AND automation_id = ?")
        self.entry = r("SELECT * FROM entries WHERE automation_id = ? AND subscriber_id = ?")
        self.messages = r("SELECT * FROM messages ORDER BY sent_at DESC, id DESC LIMIT ?")
        self.automation_messages = r(
            "SELECT * FROM messages WHERE automation_id = ? ORDER BY sent_at DESC, id DESC LIMIT ?"
        )
        self.message = r("SELECT * FROM messages WHERE id = ?")
        self.message_by_provider_id = r(
            "SELECT * FROM messages WHERE provider = ? AND provider_message_id = ?"
            " ORDER BY sent_at DESC LIMIT 1"
        )
        self.message_events = r("SELECT * FROM message_events WHERE message_id = ? ORDER BY seq")
        self.messages_sent_between = r(
            "SELECT * FROM messages WHERE automation_id = ? AND sent_at > ? AND sent_at <= ?"
            " ORDER BY sent_at, id"
        )
        # Every accepted trigger is an entry (a re-anchoring one creates no first email).
        self.triggered = r(
            "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) AS triggered"
            " FROM entries WHERE automation_id = ?"
        )
        self.send_stats = r(
            "SELECT status, reason, COUNT(*) AS sends FROM pending_sends"
            " WHERE automation_id = ? GROUP BY status, reason"
        )
        self.queue_depth = r(
            "SELECT COUNT(*) AS n FROM pending_sends WHERE status IN ('pending', 'claimed')"
        )
        self.meta = r("SELECT value FROM meta WHERE key = ?")
        self.failed_events = r(
            "SELECT * FROM events WHERE error IS NOT NULL ORDER BY seq DESC LIMIT ?"
        )
        self.last_event_seq = r("SELECT COALESCE(MAX(seq), 0) AS last FROM events")
        self.has_unprocessed = r(
            f"SELECT 1 FROM events WHERE {dialect.unprocessed} AND seq <= ? LIMIT 1"
        )
        self.unprocessed_count = r(f"SELECT COUNT(*) AS n FROM events WHERE {dialect.unprocessed}")
        self.events_of = r("SELECT * FROM events WHERE email = ? ORDER BY seq")
        self.suppression_lifts = r(
            "SELECT * FROM suppression_lifts WHERE subscriber_id = ? ORDER BY seq"
        )
        self.event_by_id = r(
            "SELECT events.* FROM event_ids JOIN events ON events.seq = event_ids.seq"
            " WHERE event_ids.id = ?"
        )
