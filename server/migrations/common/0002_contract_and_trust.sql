-- auto-server schema, version 2: report schema 2, case-insensitive host names, credential scopes,
-- nonce expiry. The same text for SQLite and PostgreSQL.

-- Host names are DNS names: matched case-insensitively, stored as reported. Two hosts that differ
-- only in case (possible before this version) keep the older one's name; the newer is renamed
-- to NAME~dupID (not a valid host name, so no report can claim it) and an error row says so.
INSERT INTO errors (at, code, hostname, report_id, plugin, message)
    SELECT created_at, 'hostname_case_duplicate', hostname, NULL, NULL,
           'migration 2: host ' || hostname || ' differs from an older host only in case: renamed to ' || hostname || '~dup' || id
    FROM hosts WHERE id NOT IN (SELECT MIN(id) FROM hosts GROUP BY lower(hostname));
UPDATE hosts SET hostname = hostname || '~dup' || id
    WHERE id NOT IN (SELECT MIN(id) FROM hosts GROUP BY lower(hostname));
CREATE UNIQUE INDEX hosts_hostname_lower ON hosts (lower(hostname));

-- Components are now kept by the generic contract: kind = PLUGIN (facts) or PLUGIN.LIST (parts),
-- item = fact name or part id. Schema 1 items cannot be mapped without per-collector code: they
-- are dropped, and each host's first schema 2 report adds them again (logged as added).
DELETE FROM components;
-- Volatile facts (uptime) are stored but never change-logged.
ALTER TABLE components ADD COLUMN volatile BIGINT NOT NULL DEFAULT 0;

-- A part list a collector could not see: its stored parts are kept, marked unknown since then.
CREATE TABLE part_lists (
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    unavailable TEXT,
    unavailable_since BIGINT,
    last_seen_at BIGINT,
    last_seen_report_id TEXT,
    PRIMARY KEY (host_id, kind)
);

-- Credential scopes: fleet (any host), host (the one host host_id), read (GET only).
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'fleet';
ALTER TABLE api_keys ADD COLUMN host_id BIGINT REFERENCES hosts (id) ON DELETE CASCADE;

-- A nonce is kept until its own timestamp has left the window (timestamp + skew), not by the
-- time it was seen.
ALTER TABLE nonces ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
UPDATE nonces SET expires_at = seen_at + 86400;
CREATE INDEX nonces_expires_at ON nonces (expires_at);
