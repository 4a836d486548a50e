-- Edge reports, the addresses users log in from, lease expiry in the audit log, and alerts.

-- What the edge last reported for a lease (POST /v1/edge/report).
ALTER TABLE leases ADD COLUMN last_handshake_at INTEGER;
ALTER TABLE leases ADD COLUMN rx_bytes INTEGER;
ALTER TABLE leases ADD COLUMN tx_bytes INTEGER;
ALTER TABLE leases ADD COLUMN reported_at INTEGER;
-- 1 once the lease's expiry is in the audit log; revoked leases never get that row.
ALTER TABLE leases ADD COLUMN expiry_audited INTEGER NOT NULL DEFAULT 0;
-- Leases that ended before this migration are history, not news: no rows for them now.
UPDATE leases SET expiry_audited = 1 WHERE expires_at <= CAST(strftime('%s', 'now') AS INTEGER);
-- Issuing a lease looks for live leases with the same key on the edge.
CREATE INDEX leases_edge_key ON leases(edge_id, public_key) WHERE revoked_at IS NULL;
CREATE INDEX leases_expiry_pending ON leases(expires_at)
    WHERE revoked_at IS NULL AND expiry_audited = 0;

-- Every address (IPv4 /32, IPv6 /64) a user has logged in from, so a login from a new one can
-- raise an alert.
CREATE TABLE login_sources (
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    source   TEXT    NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, source)
);

-- One row per audit event a human should hear about. The trigger below writes it in the
-- transaction of the audit row itself, so an event is never recorded without its alert (or the
-- other way round); a background task delivers it to the webhook.
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    audit_id   INTEGER NOT NULL UNIQUE REFERENCES audit(id),
    state      TEXT    NOT NULL DEFAULT 'pending',  -- pending, sent, failed, expired
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,
    sent_at    INTEGER,
    last_error TEXT
);
CREATE INDEX alerts_pending ON alerts(next_at) WHERE state = 'pending';

-- One alert per kind, actor and source address in any 15 minutes: a roaming client reported
-- every few seconds, or a replayed TOTP code, should reach a person once, not flood them. The
-- audit log keeps every event.
CREATE TRIGGER audit_alerts AFTER INSERT ON audit
WHEN NEW.kind IN ('account_locked', 'totp_reused', 'lease_key_off_pin', 'login_new_source')
 AND NOT EXISTS (
    SELECT 1 FROM audit u JOIN alerts a ON a.audit_id = u.id
    WHERE u.at > NEW.at - 900 AND u.kind = NEW.kind
      AND u.actor IS NEW.actor AND u.source_ip IS NEW.source_ip)
BEGIN
    INSERT INTO alerts (audit_id, next_at) VALUES (NEW.id, NEW.at);
END;
