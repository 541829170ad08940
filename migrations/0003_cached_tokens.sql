-- Cached prompt tokens and which client API a row came from (SPEC sections 10 and 11). Existing rows
-- keep every value and read the defaults: chat completions, nothing cached. ADD COLUMN with a constant
-- default rewrites no row, so this is instant on a ledger of any size.
ALTER TABLE requests ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat.completions';
ALTER TABLE requests ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;

-- The spend views gain the cached (read from a cache) and cache-write prompt tokens.
DROP VIEW spend_by_key;
DROP VIEW spend_by_model;
DROP VIEW spend_by_day;

CREATE VIEW spend_by_key AS
SELECT r.key_id AS key_id, k.name AS name, COUNT(*) AS requests,
       SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens,
       SUM(r.cached_tokens) AS cached_tokens, SUM(r.cache_write_tokens) AS cache_write_tokens,
       SUM(r.cost_usd) AS cost_usd
FROM requests r LEFT JOIN api_keys k ON k.id = r.key_id
GROUP BY r.key_id;

CREATE VIEW spend_by_model AS
SELECT r.route AS model, COUNT(*) AS requests,
       SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens,
       SUM(r.cached_tokens) AS cached_tokens, SUM(r.cache_write_tokens) AS cache_write_tokens,
       SUM(r.cost_usd) AS cost_usd
FROM requests r
GROUP BY r.route;

CREATE VIEW spend_by_day AS
SELECT substr(r.created_at, 1, 10) AS day, COUNT(*) AS requests,
       SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens,
       SUM(r.cached_tokens) AS cached_tokens, SUM(r.cache_write_tokens) AS cache_write_tokens,
       SUM(r.cost_usd) AS cost_usd
FROM requests r
GROUP BY substr(r.created_at, 1, 10);
