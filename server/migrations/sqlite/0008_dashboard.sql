-- auto-server schema, version 8 (SQLite): the dashboard without a scan of every host's facts.
-- Keep in step with migrations/postgres/0008_dashboard.sql: only the facts index differs.

-- The charts count one fact's values over all hosts (`GROUP BY data` of kind = PLUGIN, item =
-- FACT): a covering index of the non-volatile facts (kinds without a dot; parts are kinds with
-- one) answers it without reading a row. The query repeats the predicate word for word, which is
-- how SQLite knows the partial index applies.
CREATE INDEX components_fact_values ON components (kind, item, data)
    WHERE volatile = 0 AND kind NOT LIKE '%.%';

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
