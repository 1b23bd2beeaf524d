-- auto-server schema, version 7: webhooks (server/src/webhooks.rs). Subscriptions, the outbox the
-- ingest fills in the report's own transaction, and the log of delivery attempts. Keep in step
-- with the other backend's file: only the key types differ.

-- A subscription, managed with `auto-server webhooks add|list|remove`. secret is sealed under
-- the master key (the URL is the associated data). components: comma-separated globs over the
-- change log's component ('' = every one); actions: comma-separated added|removed|changed ('' =
-- every one); host_glob: a glob over the host name, compared case-insensitively.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    components TEXT NOT NULL,
    actions TEXT NOT NULL,
    host_glob TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One event for one subscription, written with the change rows it stems from. body is the exact
-- JSON POSTed on every attempt. state: pending | delivered | failed. Times in _ms are Unix
-- milliseconds; a row is leased by one server while it POSTs it (leased_until_ms).
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    leased_until_ms BIGINT NOT NULL DEFAULT 0,
    leased_by TEXT,
    finished_at BIGINT
);
CREATE INDEX webhook_outbox_head ON webhook_outbox (webhook_id, state, id);

-- Every attempt: its HTTP status, or the error when there was none; worker: the server process
-- that made it (a random id per start).
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id BIGINT NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
    webhook_id BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    final_state TEXT NOT NULL,
    worker TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_outbox ON webhook_deliveries (outbox_id);
