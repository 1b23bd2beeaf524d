-- auto-server schema, version 1 (PostgreSQL). Keep in step with migrations/sqlite/0001_init.sql:
-- the same tables and columns; only the key types differ.
CREATE TABLE hosts (
    id BIGSERIAL PRIMARY KEY,
    hostname TEXT NOT NULL UNIQUE,
    address TEXT,
    port BIGINT NOT NULL DEFAULT 22,
    created_at BIGINT NOT NULL,
    last_report_at BIGINT,
    last_report_id TEXT,
    uptime_seconds BIGINT,
    machine_id TEXT,
    serial TEXT,
    system_uuid TEXT
);
CREATE INDEX hosts_machine_id ON hosts (machine_id);
CREATE INDEX hosts_serial ON hosts (serial);
CREATE INDEX hosts_system_uuid ON hosts (system_uuid);
CREATE TABLE components (
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    item TEXT NOT NULL,
    data TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (host_id, kind, item)
);
CREATE TABLE changes (
    id BIGSERIAL PRIMARY KEY,
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    report_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    component TEXT NOT NULL,
    item TEXT NOT NULL,
    action TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX changes_host ON changes (host_id, id);
CREATE TABLE errors (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    code TEXT NOT NULL,
    hostname TEXT,
    report_id TEXT,
    plugin TEXT,
    message TEXT NOT NULL
);
CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    status BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    secret_enc TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE nonces (
    nonce TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX nonces_seen_at ON nonces (seen_at);
