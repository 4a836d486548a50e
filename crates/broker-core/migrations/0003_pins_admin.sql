-- Per-grant pin prefixes, edge last-seen time, and an index for audit queries by time.

-- The prefix a lease's pin is masked to: /32 and /64 pin one address; shorter prefixes let a
-- client behind carrier-grade NAT or with IPv6 privacy addresses keep working.
ALTER TABLE grants ADD COLUMN pin_prefix4 INTEGER NOT NULL DEFAULT 32;
ALTER TABLE grants ADD COLUMN pin_prefix6 INTEGER NOT NULL DEFAULT 64;

-- Last time the edge opened or held its sync stream (unix seconds).
ALTER TABLE edges ADD COLUMN last_seen_at INTEGER;

CREATE INDEX audit_at ON audit(at);
