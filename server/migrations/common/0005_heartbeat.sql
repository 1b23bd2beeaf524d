-- The row /readyz writes to prove the database takes writes (one row; every server process on
-- one database writes the same row).
CREATE TABLE heartbeat (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL
);
