-- Each applied revision of an automation with the commit that carried it, and each applied
-- commit's subject (mirrors the SQLite 0010).
CREATE TABLE automation_revisions (
    automation_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    commit_sha TEXT,
    applied_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (automation_id, revision)
);
INSERT INTO automation_revisions (automation_id, revision, commit_sha, applied_at)
    SELECT id, revision, commit_sha, applied_at FROM automations;

CREATE TABLE commits (
    sha TEXT PRIMARY KEY,
    subject TEXT NOT NULL
);

CREATE INDEX messages_by_revision ON messages(automation_id, revision);
