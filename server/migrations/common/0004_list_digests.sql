-- auto-server schema, version 4 (the same text on SQLite and PostgreSQL): the digest of each part
-- list as last seen, so that a client may send a long list that did not change (installed
-- packages) as {"unchanged": DIGEST} (report schema 2, docs/report-schema.md).
ALTER TABLE part_lists ADD COLUMN digest TEXT;
