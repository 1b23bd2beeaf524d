-- auto-server schema, version 3: the web pages. People (users, sessions, login throttling),
-- hand-entered fields with their own change log, the search index, and the indexes the pages'
-- queries need. Keep in step with the other backend's file: only the key types and the search
-- index's collation differ.

-- People who use the pages (never API keys). role: viewer | admin.
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_name_lower ON users (lower(name));

-- Sessions live in the database, so that several server processes share them. id_hash is the
-- SHA-256 of the cookie's token: a copy of the database does not give the sessions away.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (user_name);

-- Failed logins, by subject (user:NAME or addr:IP), for the login rate limit.
CREATE TABLE login_failures (
    subject TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures (subject, at);

-- Hand-entered fields: never touched by a report.
CREATE TABLE host_fields (
    host_id BIGINT PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
    owner TEXT,
    location TEXT,
    rack TEXT,
    tags TEXT,
    notes TEXT,
    updated_at BIGINT,
    updated_by TEXT
);
CREATE TABLE host_tags (
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (tag, host_id)
);
CREATE INDEX host_tags_host ON host_tags (host_id);
CREATE TABLE field_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX field_changes_host ON field_changes (host_id, id);

-- The search index: every word of a host's name, identity, components and hand-entered fields,
-- lower-cased, rewritten by the ingest when the host changed. A search is a prefix range scan.
CREATE TABLE search_tokens (
    token TEXT NOT NULL,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    PRIMARY KEY (token, host_id)
) WITHOUT ROWID;
CREATE INDEX search_tokens_host ON search_tokens (host_id);

-- Which host a report was applied to and the last change row it wrote: the state after any
-- report is rebuilt from the current one by undoing the later change rows.
ALTER TABLE reports ADD COLUMN host_id BIGINT;
ALTER TABLE reports ADD COLUMN last_change_id BIGINT;
CREATE INDEX reports_host ON reports (host_id, received_at);

CREATE INDEX errors_report ON errors (report_id);
CREATE INDEX errors_hostname ON errors (hostname, id);
CREATE INDEX components_kind_item ON components (kind, item);
CREATE INDEX changes_at ON changes (at);
CREATE INDEX hosts_last_report_at ON hosts (last_report_at);
