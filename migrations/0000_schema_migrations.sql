-- The runner's own bookkeeping: one row per applied file. IF NOT EXISTS keeps databases made
-- before this file existed (the runner used to create the table itself) working.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
