-- ../0006_responses.sql in PostgreSQL's dialect (the same statements).
-- Stored responses (SPEC section 10.2, issue 15): what `POST /v1/responses` keeps unless `store` is false,
-- so `previous_response_id` continues a conversation on any target and `GET /v1/responses/{id}` answers.
-- One row per response, owned by the key that made it. `input` holds the whole conversation the
-- response answered (the stored ones before it included), so a row is enough to continue from, whatever
-- was deleted or pruned since; `response` is the response object as the client got it. Both are JSON
-- text. Rows older than settings.responses_days (default 30) are deleted by the gateway.
CREATE TABLE responses (
    id          TEXT PRIMARY KEY,      -- resp_<request id>
    key_id      TEXT NOT NULL,
    created_at  TEXT NOT NULL,         -- ISO-8601 UTC, as the ledger's
    input       TEXT NOT NULL,
    response    TEXT NOT NULL
);

CREATE INDEX responses_created_at ON responses (created_at);
