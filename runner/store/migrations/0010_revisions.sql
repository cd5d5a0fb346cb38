-- Each applied revision of an automation with the commit that carried it, and each applied
-- commit's subject: stats by revision name the commit and its subject without running git
-- when they are asked for (messages already record the revision that rendered them).
CREATE TABLE automation_revisions (
    automation_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    commit_sha TEXT,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (automation_id, revision)
) WITHOUT ROWID;
-- Older revisions were not kept: the current one of every automation is known.
INSERT INTO automation_revisions (automation_id, revision, commit_sha, applied_at)
    SELECT id, revision, commit_sha, applied_at FROM automations;

CREATE TABLE commits (
    sha TEXT PRIMARY KEY,
    subject TEXT NOT NULL
) WITHOUT ROWID;

-- Stats by revision read one automation's messages grouped by revision.
CREATE INDEX messages_by_revision ON messages(automation_id, revision);
