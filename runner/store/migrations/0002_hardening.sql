-- Hardening of the first schema: per-event errors, explicit "send now", event id retention.

-- An event whose processing raised is marked processed with the error, so the queue goes on.
ALTER TABLE events ADD COLUMN error TEXT;
CREATE INDEX events_failed ON events(seq) WHERE error IS NOT NULL;

-- Set by "send now": the sender skips the send window for this send (and its retries).
ALTER TABLE pending_sends ADD COLUMN skip_window INTEGER NOT NULL DEFAULT 0
    CHECK (skip_window IN (0, 1));
