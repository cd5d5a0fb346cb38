-- The sender's due query takes the earliest sends by (due_at, id). The index was on
-- (due_at, status, lease_until), which gives no order among sends due at the same instant:
-- after a schedule firing, when hundreds of thousands share one due time, every claim read
-- and sorted all of them to take the first batch. On (due_at, id), as on PostgreSQL, a claim
-- reads the index in order and stops after its batch (status and lease are checked on the
-- rows it passes: only sends being sent right now are skipped).
DROP INDEX IF EXISTS pending_due;
CREATE INDEX pending_due ON pending_sends(due_at, id) WHERE status IN ('pending', 'claimed');
