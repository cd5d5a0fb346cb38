-- The subscribers API: where a suppression came from, lifted suppressions, erasure.

-- JSON: the provider webhook event, unsubscribe link, API event or refused send that
-- suppressed the subscriber (runner.engine.suppression).
ALTER TABLE subscribers ADD COLUMN suppressed_source TEXT;
-- Set when a deleted subscriber's address and rendered emails were scrubbed everywhere.
ALTER TABLE subscribers ADD COLUMN erased_at TEXT;

-- Every hard-bounce or complaint suppression lifted through the API, with who and why.
CREATE TABLE suppression_lifts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id INTEGER NOT NULL REFERENCES subscribers(id),
    lifted_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    suppressed_at TEXT,
    source TEXT,
    lifted_by TEXT NOT NULL,
    note TEXT
);
CREATE INDEX suppression_lifts_by_subscriber ON suppression_lifts(subscriber_id, seq);

-- A person's messages and sends, whatever their status (the subscriber view, erasure).
CREATE INDEX messages_by_subscriber ON messages(subscriber_id, sent_at, id);
CREATE INDEX sends_by_subscriber ON pending_sends(subscriber_id);
