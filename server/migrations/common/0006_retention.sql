-- auto-server schema, version 6 (the same text on SQLite and PostgreSQL): retention. The pruning
-- of report rows and of the error log finds old rows by time (server/src/retention.rs); without
-- these indexes every batch would scan the whole table.
CREATE INDEX reports_received_at ON reports (received_at);
CREATE INDEX errors_at ON errors (at);
