-- API tokens: the SHA-256 of each token (the token itself is shown once, at creation), its
-- scopes (comma-separated), when it was last used, and when it was revoked (kept, so that
-- `rapport token list` shows it and the name is not reused by mistake).
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    token_sha256 TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
