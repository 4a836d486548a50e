-- Invited users: created by an admin with a temporary password, they choose their own password
-- and enrol a TOTP secret at first sign-in on the web pages. Until then `invite_expires_at`
-- holds the invitation's end, no login is accepted, and the sealed secret in the row is one
-- nobody was ever shown.
ALTER TABLE users ADD COLUMN invite_expires_at INTEGER;

-- An enrolment under way: the temporary password was accepted and a new TOTP secret shown;
-- it counts once a code for it is confirmed. One per user at most; the token is kept hashed.
CREATE TABLE enrolments (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    token_hash  BLOB    NOT NULL UNIQUE,
    totp_sealed BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
