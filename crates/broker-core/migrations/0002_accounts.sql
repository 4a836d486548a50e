-- Accounts: TOTP secrets sealed at rest, login throttling, disabled users, idle sessions.

-- nonce || ChaCha20-Poly1305(secret) under <data-dir>/secrets.key, with the user's name as
-- associated data. Once a row is sealed its totp_secret holds an empty blob (the column is
-- NOT NULL, and rebuilding users would cascade into sessions, grants and leases).
ALTER TABLE users ADD COLUMN totp_sealed BLOB;
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
-- Failed logins in a row, and the time before which the next attempt is refused.
ALTER TABLE users ADD COLUMN failed_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until INTEGER;

-- One row per counted failure, kept for an hour, for the per-hour cap.
CREATE TABLE login_failures (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    at      INTEGER NOT NULL
);
CREATE INDEX login_failures_user_at ON login_failures(user_id, at);

ALTER TABLE sessions ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET last_used_at = created_at;
CREATE INDEX sessions_user ON sessions(user_id);
