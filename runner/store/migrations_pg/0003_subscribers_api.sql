-- The subscribers API (mirrors the SQLite 0003): suppression sources, lifts, erasure.

ALTER TABLE subscribers ADD COLUMN suppressed_source TEXT;
ALTER TABLE subscribers ADD COLUMN erased_at TIMESTAMPTZ;

CREATE TABLE suppression_lifts (
    seq BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers(id),
    lifted_at TIMESTAMPTZ NOT NULL,
    reason TEXT NOT NULL,
    suppressed_at TIMESTAMPTZ,
    source TEXT,
    lifted_by TEXT NOT NULL,
    note TEXT
);
CREATE INDEX suppression_lifts_by_subscriber ON suppression_lifts(subscriber_id, seq);

CREATE INDEX messages_by_subscriber ON messages(subscriber_id, sent_at, id);
CREATE INDEX sends_by_subscriber ON pending_sends(subscriber_id);
