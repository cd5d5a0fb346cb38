-- A send's request that may have reached its provider, written before the request is: the
-- sender that finds it after a crash or an expired lease resends only with an idempotency
-- key, and otherwise records the send `outcome_unknown` (mirrors the SQLite 0004).
ALTER TABLE pending_sends ADD COLUMN in_flight TEXT;
