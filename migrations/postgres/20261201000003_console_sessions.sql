-- Web console sessions. The browser holds a random session token in an HttpOnly cookie;
-- only its sha256 is kept here, so a copy of this table signs nobody in. A session names
-- the key it was opened with, never the key itself: a revoked or expired key ends its
-- sessions at once. Mutable (sign-out deletes the row), so it lives beside the log.
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_sessions_expires_at_idx ON console_sessions (expires_at);
