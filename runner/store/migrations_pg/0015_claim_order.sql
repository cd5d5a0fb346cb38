-- SQLite's migration 0015 orders the sender's due index by (due_at, id); on PostgreSQL it
-- has been so from the start (0001), so this only states it.
CREATE INDEX IF NOT EXISTS pending_due ON pending_sends(due_at, id)
    WHERE status IN ('pending', 'claimed');
