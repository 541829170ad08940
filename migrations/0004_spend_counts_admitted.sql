-- The spend views count what they say (issue 18 item 10). Before, every row was a request, so client
-- mistakes (a 400 for a typo) swelled `requests` and showed as a blank model. Now `requests` counts the
-- admitted requests only (ok, error, cancelled), tokens and cost are theirs, and two new columns follow
-- cost_usd: `refused`, requests refused for the key's limits, budget or model list (429s and 403s), and
-- `errors`, admitted requests the upstream failed. Other rejected rows (400s, 404s: client mistakes; 503
-- limiter_unavailable) stay in the `requests` table, but not in these views. Column names kept; two added.
DROP VIEW spend_by_key;
DROP VIEW spend_by_model;
DROP VIEW spend_by_day;

CREATE VIEW spend_by_key AS
SELECT r.key_id AS key_id, k.name AS name,
       SUM(CASE WHEN r.status <> 'rejected' THEN 1 ELSE 0 END) AS requests,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.prompt_tokens ELSE 0 END) AS prompt_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.completion_tokens ELSE 0 END) AS completion_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.cached_tokens ELSE 0 END) AS cached_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.cache_write_tokens ELSE 0 END) AS cache_write_tokens,
       SUM(r.cost_usd) AS cost_usd,
       SUM(CASE WHEN r.status = 'rejected' THEN 1 ELSE 0 END) AS refused,
       SUM(CASE WHEN r.status = 'error' THEN 1 ELSE 0 END) AS errors
FROM requests r LEFT JOIN api_keys k ON k.id = r.key_id
WHERE r.status <> 'rejected'
   OR r.error_code IN ('rate_limit_exceeded', 'request_exceeds_limit', 'budget_exceeded', 'model_not_allowed')
GROUP BY r.key_id;

CREATE VIEW spend_by_model AS
SELECT r.route AS model,
       SUM(CASE WHEN r.status <> 'rejected' THEN 1 ELSE 0 END) AS requests,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.prompt_tokens ELSE 0 END) AS prompt_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.completion_tokens ELSE 0 END) AS completion_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.cached_tokens ELSE 0 END) AS cached_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.cache_write_tokens ELSE 0 END) AS cache_write_tokens,
       SUM(r.cost_usd) AS cost_usd,
       SUM(CASE WHEN r.status = 'rejected' THEN 1 ELSE 0 END) AS refused,
       SUM(CASE WHEN r.status = 'error' THEN 1 ELSE 0 END) AS errors
FROM requests r
WHERE r.status <> 'rejected'
   OR r.error_code IN ('rate_limit_exceeded', 'request_exceeds_limit', 'budget_exceeded', 'model_not_allowed')
GROUP BY r.route;

CREATE VIEW spend_by_day AS
SELECT substr(r.created_at, 1, 10) AS day,
       SUM(CASE WHEN r.status <> 'rejected' THEN 1 ELSE 0 END) AS requests,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.prompt_tokens ELSE 0 END) AS prompt_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.completion_tokens ELSE 0 END) AS completion_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.cached_tokens ELSE 0 END) AS cached_tokens,
       SUM(CASE WHEN r.status <> 'rejected' THEN r.cache_write_tokens ELSE 0 END) AS cache_write_tokens,
       SUM(r.cost_usd) AS cost_usd,
       SUM(CASE WHEN r.status = 'rejected' THEN 1 ELSE 0 END) AS refused,
       SUM(CASE WHEN r.status = 'error' THEN 1 ELSE 0 END) AS errors
FROM requests r
WHERE r.status <> 'rejected'
   OR r.error_code IN ('rate_limit_exceeded', 'request_exceeds_limit', 'budget_exceeded', 'model_not_allowed')
GROUP BY substr(r.created_at, 1, 10);
