-- Hardening of the first schema: per-event errors, explicit "send now" (mirrors the SQLite 0002).

-- An event whose processing raised is marked processed with the error, so the queue goes on.
ALTER TABLE events ADD COLUMN error TEXT;
CREATE INDEX events_failed ON events(seq) WHERE error IS NOT NULL;

-- Set by "send now": the sender skips the send window for this send (and its retries).
ALTER TABLE pending_sends ADD COLUMN skip_window BOOLEAN NOT NULL DEFAULT FALSE;
