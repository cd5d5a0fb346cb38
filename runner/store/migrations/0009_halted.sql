-- Why a send was halted while its request was in flight (stopped, deleted, deleted_subscriber):
-- the provider's answer is still recorded (sent, failed, outcome_unknown), but neither a
-- retry nor the next repeat of its series follows. NULL for every other send.
ALTER TABLE pending_sends ADD COLUMN halted TEXT;
