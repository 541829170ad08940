-- The ledger no longer checks `requests.key_id` against `api_keys` (../0007_ledger_keeps_every_key.sql
-- says why). The constraint is the one 0001_init.sql declared, under the name PostgreSQL gave it.
ALTER TABLE requests DROP CONSTRAINT IF EXISTS requests_key_id_fkey;
