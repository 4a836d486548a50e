-- Failed logins are counted per account and network (IPv4 /24, IPv6 /64), so a stranger who
-- knows a user name cannot lock the user out of the networks they log in from. A network the
-- user has logged in from keeps its own streak and wait here; failures from networks the user
-- never used share the account-wide streak in users (failed_streak, locked_until) and the
-- account-wide hourly cap.
CREATE TABLE login_network_locks (
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    network       TEXT    NOT NULL,
    failed_streak INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    PRIMARY KEY (user_id, network)
);

-- Which network a counted failure came from, and whether the user had logged in from it
-- (rows from before this migration count as unknown networks, as they did).
ALTER TABLE login_failures ADD COLUMN network TEXT NOT NULL DEFAULT '';
ALTER TABLE login_failures ADD COLUMN known INTEGER NOT NULL DEFAULT 0;
CREATE INDEX login_failures_user_network_at ON login_failures(user_id, network, at);
