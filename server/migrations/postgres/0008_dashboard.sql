-- auto-server schema, version 8 (PostgreSQL): the dashboard without a scan of every host's
-- facts. Keep in step with migrations/sqlite/0008_dashboard.sql: only the facts index differs.

-- The charts count one fact's values over all hosts. SQLite gets a covering index of
-- (kind, item, data); here a B-tree entry is limited to about 2.7 kB and a fact may be longer,
-- so the facts are indexed by (kind, item) only (components_kind_item of version 3 already is).

-- Failing collectors: which collectors failed in each host's last report, kept by the ingest in
-- the report's transaction (replaced per report, gone with the host).
CREATE TABLE host_failures (
    host_id BIGINT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    plugin TEXT NOT NULL,
    PRIMARY KEY (plugin, host_id)
);
CREATE INDEX host_failures_host ON host_failures (host_id);
INSERT INTO host_failures (host_id, plugin)
    SELECT DISTINCT h.id, e.plugin FROM hosts h JOIN errors e ON e.report_id = h.last_report_id
    WHERE e.code = 'plugin_failed' AND e.plugin IS NOT NULL;
