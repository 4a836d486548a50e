-- Bounds on what one party can take or leave behind: live leases per grant, the life of an edge
-- enrolment token, and one off-pin alert per lease rather than per source address.

-- A grant's live leases are capped, so one user looping lease requests with fresh keys cannot
-- fill the edge's subnet for everyone else. 5 covers a phone, a laptop, a TV and spares.
ALTER TABLE grants ADD COLUMN max_leases INTEGER NOT NULL DEFAULT 5;
-- Issuance counts a grant's live leases inside its transaction.
CREATE INDEX leases_grant_live ON leases(grant_id, expires_at) WHERE revoked_at IS NULL;

-- Unix seconds after which the enrolment token is refused. NULL is refused too (fail closed):
-- tokens still unused when this migration runs get a day from now, like new ones.
ALTER TABLE edges ADD COLUMN enrol_expires_at INTEGER;
UPDATE edges SET enrol_expires_at = CAST(strftime('%s', 'now') AS INTEGER) + 86400
WHERE enrol_token_hash IS NOT NULL;

-- Retention deletes sessions by expiry and audit rows (with their alerts) by age.
CREATE INDEX sessions_expires ON sessions(expires_at);

-- As 0004's trigger, except that a lease key used off its pin is one alert per lease in any 15
-- minutes, whatever the source address: a stolen key tried from many addresses (or a client
-- roaming through many) must not flood the receiver. An off-pin audit row's detail opens with
-- `lease=ID `, written by service/reports.rs.
DROP TRIGGER audit_alerts;
CREATE TRIGGER audit_alerts AFTER INSERT ON audit
WHEN NEW.kind IN ('account_locked', 'totp_reused', 'lease_key_off_pin', 'login_new_source')
 AND NOT EXISTS (
    SELECT 1 FROM audit u JOIN alerts a ON a.audit_id = u.id
    WHERE u.at > NEW.at - 900 AND u.kind = NEW.kind AND u.actor IS NEW.actor
      AND CASE WHEN NEW.kind = 'lease_key_off_pin'
               THEN substr(u.detail, 1, instr(u.detail || ' ', ' '))
                    = substr(NEW.detail, 1, instr(NEW.detail || ' ', ' '))
               ELSE u.source_ip IS NEW.source_ip END)
BEGIN
    INSERT INTO alerts (audit_id, next_at) VALUES (NEW.id, NEW.at);
END;
