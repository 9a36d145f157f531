-- gridwatch schema 6 (PostgreSQL): tokens ended before their expiry by logging out (design §8). A row is
-- kept until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    token_id   text PRIMARY KEY,
    username   text        NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
