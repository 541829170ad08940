-- Keys and the request ledger (SPEC section 7).
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    key_prefix    TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,          -- hex SHA-256 of the whole secret
    rpm_limit     INTEGER NOT NULL,
    tpm_limit     INTEGER NOT NULL,
    max_budget    REAL NOT NULL,                 -- USD
    budget_period TEXT NOT NULL DEFAULT 'never' CHECK (budget_period IN ('never', 'daily', 'monthly')),
    models        TEXT,                          -- JSON array, NULL for all
    created_at    TEXT NOT NULL,
    revoked_at    TEXT,
    updated_at    TEXT NOT NULL                  -- lets a running server pick up CLI changes
);
CREATE INDEX api_keys_updated ON api_keys (updated_at);

CREATE TABLE requests (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT NOT NULL,
    key_id            TEXT NOT NULL REFERENCES api_keys (id),
    created_at        TEXT NOT NULL,             -- ISO-8601 UTC
    route             TEXT,
    provider          TEXT,
    upstream_model    TEXT,
    stream            INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL CHECK (status IN ('ok', 'error', 'cancelled', 'rejected')),
    http_status       INTEGER,
    error_code        TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens  INTEGER,
    total_tokens      INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    latency_ms        REAL,
    ttft_ms           REAL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    usage_source      TEXT CHECK (usage_source IN ('upstream', 'estimated'))
);
CREATE INDEX requests_key_time ON requests (key_id, created_at);
CREATE INDEX requests_time ON requests (created_at);
