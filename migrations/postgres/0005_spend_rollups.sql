-- ../0005_spend_rollups.sql in PostgreSQL's dialect: the same table, built the same way, and the views
-- over it (sums cast back to BIGINT: PostgreSQL sums BIGINT as NUMERIC). A statement-level trigger adds
-- each ledger batch's sums (one COPY, one statement) from its transition table, in the same transaction.

CREATE TABLE spend_daily (
    day                TEXT COLLATE "C" NOT NULL,     -- YYYY-MM-DD (UTC), the day of created_at
    key_id             TEXT NOT NULL,
    route              TEXT NOT NULL,          -- '' for a request refused before it had one
    requests           BIGINT NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0,
    cached_tokens      BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0,
    refused            BIGINT NOT NULL DEFAULT 0,
    errors             BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, route)
);

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

CREATE FUNCTION spend_daily_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
    FROM added WHERE (status <> 'rejected' OR error_code IN ('rate_limit_exceeded', 'request_exceeds_limit', 'budget_exceeded', 'model_not_allowed'))
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
    RETURN NULL;
END
$$;

CREATE TRIGGER spend_daily_add AFTER INSERT ON requests REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION spend_daily_add();

DROP VIEW spend_by_key;
DROP VIEW spend_by_model;
DROP VIEW spend_by_day;

CREATE VIEW spend_by_key AS
SELECT s.key_id AS key_id, k.name AS name,
       SUM(s.requests)::bigint AS requests,
       SUM(s.prompt_tokens)::bigint AS prompt_tokens,
       SUM(s.completion_tokens)::bigint AS completion_tokens,
       SUM(s.cached_tokens)::bigint AS cached_tokens,
       SUM(s.cache_write_tokens)::bigint AS cache_write_tokens,
       SUM(s.cost_usd) AS cost_usd,
       SUM(s.refused)::bigint AS refused,
       SUM(s.errors)::bigint AS errors
FROM spend_daily s
LEFT JOIN api_keys k ON k.id = s.key_id
GROUP BY s.key_id, k.name;

CREATE VIEW spend_by_model AS
SELECT NULLIF(s.route, '') AS model,
       SUM(s.requests)::bigint AS requests,
       SUM(s.prompt_tokens)::bigint AS prompt_tokens,
       SUM(s.completion_tokens)::bigint AS completion_tokens,
       SUM(s.cached_tokens)::bigint AS cached_tokens,
       SUM(s.cache_write_tokens)::bigint AS cache_write_tokens,
       SUM(s.cost_usd) AS cost_usd,
       SUM(s.refused)::bigint AS refused,
       SUM(s.errors)::bigint AS errors
FROM spend_daily s
GROUP BY s.route;

CREATE VIEW spend_by_day AS
SELECT s.day AS day,
       SUM(s.requests)::bigint AS requests,
       SUM(s.prompt_tokens)::bigint AS prompt_tokens,
       SUM(s.completion_tokens)::bigint AS completion_tokens,
       SUM(s.cached_tokens)::bigint AS cached_tokens,
       SUM(s.cache_write_tokens)::bigint AS cache_write_tokens,
       SUM(s.cost_usd) AS cost_usd,
       SUM(s.refused)::bigint AS refused,
       SUM(s.errors)::bigint AS errors
FROM spend_daily s
GROUP BY s.day;
