-- Why a send was halted while its request was in flight (stopped, deleted, deleted_subscriber):
-- the provider's answer is still recorded, but neither a retry nor the next repeat of its
-- series follows (mirrors the SQLite 0009).
ALTER TABLE pending_sends ADD COLUMN halted TEXT;
