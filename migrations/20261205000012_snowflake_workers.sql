-- Snowflake worker ids leased by running nodes: ids stay unique when several nodes share this
-- database. A lease that is not renewed expires and its worker id may be taken again.
CREATE TABLE snowflake_workers (
    worker_id  SMALLINT PRIMARY KEY CHECK (worker_id BETWEEN 0 AND 1023),
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
