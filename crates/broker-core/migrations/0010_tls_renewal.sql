-- A certificate that could not be renewed from the ACME CA alerts like the other events a human
-- must act on (crates/broker/src/acme.rs writes the audit rows). Same throttle as 0009: one
-- alert per kind, actor and source in any 15 minutes, so a renewal retried every few seconds
-- while the CA is down is one alert, repeated while it stays down.
DROP TRIGGER audit_alerts;
CREATE TRIGGER audit_alerts AFTER INSERT ON audit
WHEN NEW.kind IN ('account_locked', 'totp_reused', 'lease_key_off_pin', 'login_new_source',
                  'tls_renewal_failed')
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
