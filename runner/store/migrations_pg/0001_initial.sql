-- The first schema of the runner's PostgreSQL store, mirroring migrations/0001_initial.sql.
-- Instants are TIMESTAMPTZ (microseconds, like the SQLite text). JSON values are TEXT written
-- with sorted keys by the same encoder as SQLite, so round trips are identical.

-- Events as received (client events) or produced by the engine (derived and internal events).
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    client_id TEXT,
    type TEXT NOT NULL,
    email TEXT NOT NULL,
    fields TEXT,
    groups TEXT,
    data TEXT NOT NULL,
    occurred_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    derived_from BIGINT REFERENCES events(seq),
    processed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX events_unprocessed ON events(seq) WHERE NOT processed;
CREATE INDEX events_by_email ON events(email, type, received_at);

-- Client event ids, kept apart from events so they can be purged after their retention.
CREATE TABLE event_ids (
    id TEXT PRIMARY KEY,
    body_hash TEXT NOT NULL,
    seq BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX event_ids_by_time ON event_ids(received_at);

CREATE TABLE subscribers (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    fields TEXT NOT NULL,
    groups TEXT NOT NULL,
    created_at TIMESTAMPTZ,
    suppressed TEXT,
    suppressed_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ
);

CREATE TABLE automations (
    id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    templates TEXT NOT NULL,
    path TEXT NOT NULL,
    commit_sha TEXT,
    applied_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    stopped_at TIMESTAMPTZ
);

-- Deferred: an applier may record history before it saves the automation row.
CREATE TABLE history (
    seq BIGSERIAL PRIMARY KEY,
    automation_id TEXT NOT NULL REFERENCES automations(id) DEFERRABLE INITIALLY DEFERRED,
    at TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    previous TEXT NOT NULL,
    value TEXT NOT NULL,
    commit_sha TEXT,
    detail TEXT
);
CREATE INDEX history_by_automation ON history(automation_id, at, seq);
CREATE INDEX history_by_kind ON history(kind, at, seq);

CREATE TABLE entries (
    automation_id TEXT NOT NULL,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers(id),
    first_at TIMESTAMPTZ NOT NULL,
    last_at TIMESTAMPTZ NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (automation_id, subscriber_id)
);

CREATE TABLE pending_sends (
    id TEXT PRIMARY KEY,
    automation_id TEXT NOT NULL REFERENCES automations(id) DEFERRABLE INITIALLY DEFERRED,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers(id),
    email TEXT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    status TEXT NOT NULL CHECK (
        status IN ('pending', 'claimed', 'sent', 'failed', 'cancelled', 'outcome_unknown')
    ),
    trigger_at TIMESTAMPTZ NOT NULL,
    trigger_event TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    series_id TEXT NOT NULL,
    repeat_index INTEGER NOT NULL,
    overrides TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL,
    lease_token TEXT,
    lease_until TIMESTAMPTZ,
    updated_at TIMESTAMPTZ,
    last_error TEXT
);
-- The sender's due query: a small partial index, so it stays fast with millions of rows.
CREATE INDEX pending_due ON pending_sends(due_at, id)
    WHERE status IN ('pending', 'claimed');
CREATE INDEX pending_by_automation ON pending_sends(automation_id, status, due_at);
CREATE INDEX pending_by_subscriber ON pending_sends(subscriber_id, automation_id)
    WHERE status IN ('pending', 'claimed');

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    pending_send_id TEXT NOT NULL REFERENCES pending_sends(id),
    automation_id TEXT NOT NULL,
    subscriber_id BIGINT NOT NULL,
    to_address TEXT NOT NULL,
    from_address TEXT NOT NULL,
    subject TEXT NOT NULL,
    html TEXT,
    text TEXT,
    headers TEXT NOT NULL,
    provider TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    provider_message_id TEXT,
    sent_at TIMESTAMPTZ NOT NULL,
    revision INTEGER NOT NULL,
    listeners TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX messages_by_time ON messages(sent_at, id);
CREATE INDEX messages_by_automation ON messages(automation_id, sent_at, id);
CREATE INDEX messages_by_provider_id ON messages(provider, provider_message_id);

CREATE TABLE message_events (
    seq BIGSERIAL PRIMARY KEY,
    provider TEXT NOT NULL,
    provider_event_id TEXT NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages(id),
    type TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    url TEXT,
    bounce TEXT,
    UNIQUE (provider, provider_event_id)
);
CREATE INDEX message_events_by_message ON message_events(message_id, type);

-- Keys claimed once ever (cron ticks, date firings, negative email checks).
CREATE TABLE once (
    key TEXT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
