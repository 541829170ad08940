-- Spend roll-ups (issue 16, "a ledger that grows for years"): the ledger summed per UTC day, key and
-- route, so budgets' period spend, `gateway spend` and these views cost keys x days, not rows (at 3
-- million rows the sums over every row took 8-10 s at each start, `keys list` and `spend`). The gateway
-- adds each ledger batch's sums in the transaction that writes the batch (gateway/store/rollup.py); here
-- they are built once from the rows already there. The views keep their names, columns and rules
-- (0004: requests and tokens of admitted requests, refusals and errors beside them), read from the
-- roll-ups. Rows deleted from `requests` by hand stay counted here: delete their roll-ups too.

CREATE TABLE spend_daily (
    day                TEXT NOT NULL,     -- YYYY-MM-DD (UTC), the day of created_at
    key_id             TEXT NOT NULL,
    route              TEXT NOT NULL,          -- '' for a request refused before it had one
    requests           INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL NOT NULL DEFAULT 0,
    refused            INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, route)
) WITHOUT ROWID;

INSERT INTO spend_daily (day, key_id, route, requests, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, cost_usd, refused, errors)
SELECT substr(created_at, 1, 10), key_id, COALESCE(route, ''),
       SUM(CASE WHEN status <> 'rejected' THEN 1 ELSE 0 END),
       SUM(CASE WHEN status <> 'rejected' THEN prompt_tokens ELSE 0 END),
       SUM(CASE WHEN status <> 'rejected' THEN completion_tokens ELSE 0 END),
       SUM(CASE WHEN status <> 'rejected' THEN cached_tokens ELSE 0 END),
       SUM(CASE WHEN status <> 'rejected' THEN cache_write_tokens ELSE 0 END),
       SUM(cost_usd),
       SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END),
       SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)
FROM requests WHERE (status <> 'rejected' OR error_code IN ('rate_limit_exceeded', 'request_exceeds_limit', 'budget_exceeded', 'model_not_allowed'))
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (day, key_id, route) DO UPDATE SET
    requests = spend_daily.requests + excluded.requests,
    prompt_tokens = spend_daily.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = spend_daily.completion_tokens + excluded.completion_tokens,
    cached_tokens = spend_daily.cached_tokens + excluded.cached_tokens,
    cache_write_tokens = spend_daily.cache_write_tokens + excluded.cache_write_tokens,
    cost_usd = spend_daily.cost_usd + excluded.cost_usd,
    refused = spend_daily.refused + excluded.refused,
    errors = spend_daily.errors + excluded.errors;

DROP VIEW spend_by_key;
DROP VIEW spend_by_model;
DROP VIEW spend_by_day;

CREATE VIEW spend_by_key AS
SELECT s.key_id AS key_id, k.name AS name,
       SUM(s.requests) AS requests,
       SUM(s.prompt_tokens) AS prompt_tokens,
       SUM(s.completion_tokens) AS completion_tokens,
       SUM(s.cached_tokens) AS cached_tokens,
       SUM(s.cache_write_tokens) AS cache_write_tokens,
       SUM(s.cost_usd) AS cost_usd,
       SUM(s.refused) AS refused,
       SUM(s.errors) AS errors
FROM spend_daily s
LEFT JOIN api_keys k ON k.id = s.key_id
GROUP BY s.key_id;

CREATE VIEW spend_by_model AS
SELECT NULLIF(s.route, '') AS model,
       SUM(s.requests) AS requests,
       SUM(s.prompt_tokens) AS prompt_tokens,
       SUM(s.completion_tokens) AS completion_tokens,
       SUM(s.cached_tokens) AS cached_tokens,
       SUM(s.cache_write_tokens) AS cache_write_tokens,
       SUM(s.cost_usd) AS cost_usd,
       SUM(s.refused) AS refused,
       SUM(s.errors) AS errors
FROM spend_daily s
GROUP BY s.route;

CREATE VIEW spend_by_day AS
SELECT s.day AS day,
       SUM(s.requests) AS requests,
       SUM(s.prompt_tokens) AS prompt_tokens,
       SUM(s.completion_tokens) AS completion_tokens,
       SUM(s.cached_tokens) AS cached_tokens,
       SUM(s.cache_write_tokens) AS cache_write_tokens,
       SUM(s.cost_usd) AS cost_usd,
       SUM(s.refused) AS refused,
       SUM(s.errors) AS errors
FROM spend_daily s
GROUP BY s.day;
