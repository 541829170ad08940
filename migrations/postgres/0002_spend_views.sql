-- Spend summaries users query directly (../0002_spend_views.sql in PostgreSQL's dialect);
-- rejected requests count as requests but cost nothing.
CREATE VIEW spend_by_key AS
SELECT r.key_id AS key_id, k.name AS name, COUNT(*) AS requests,
       SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens,
       SUM(r.cost_usd) AS cost_usd
FROM requests r LEFT JOIN api_keys k ON k.id = r.key_id
GROUP BY r.key_id, k.name;

CREATE VIEW spend_by_model AS
SELECT r.route AS model, COUNT(*) AS requests,
       SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens,
       SUM(r.cost_usd) AS cost_usd
FROM requests r
GROUP BY r.route;

CREATE VIEW spend_by_day AS
SELECT substr(r.created_at, 1, 10) AS day, COUNT(*) AS requests,
       SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens,
       SUM(r.cost_usd) AS cost_usd
FROM requests r
GROUP BY substr(r.created_at, 1, 10);
