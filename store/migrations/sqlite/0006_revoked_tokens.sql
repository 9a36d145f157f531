-- gridwatch schema 6 (SQLite): tokens ended before their expiry by logging out (design §8). A row is
-- kept until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    token_id   TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
