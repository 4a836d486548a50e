-- grantwire broker schema. Times are unix seconds (INTEGER). Secrets that only need checking
-- (session tokens, enrolment tokens, edge credentials) are stored as SHA-256 digests.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,          -- argon2id PHC string
    totp_secret    BLOB    NOT NULL,          -- 20 bytes
    -- Highest TOTP time step accepted so far: a code is accepted only for a later step, so no
    -- code works twice.
    totp_last_step INTEGER,
    admin          INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE edges (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    endpoint          TEXT    NOT NULL,
    subnet            TEXT    NOT NULL,       -- e.g. 10.77.0.0/24
    tunnel_address    TEXT    NOT NULL,       -- first host of subnet
    public_key        TEXT,                   -- set at enrolment
    enrol_token_hash  BLOB    UNIQUE,         -- NULL once used
    credential_hash   BLOB    UNIQUE,         -- set at enrolment
    created_at        INTEGER NOT NULL,
    enrolled_at       INTEGER
);

CREATE TABLE grants (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    edge_id        INTEGER NOT NULL REFERENCES edges(id) ON DELETE CASCADE,
    lease_ttl_secs INTEGER NOT NULL,
    ports          TEXT    NOT NULL,          -- JSON array of TCP ports
    ends_at        INTEGER,                   -- NULL: no end
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);

-- At most one live grant per user and edge.
CREATE UNIQUE INDEX grants_live ON grants(user_id, edge_id) WHERE revoked_at IS NULL;

CREATE TABLE leases (
    id             TEXT    PRIMARY KEY,
    grant_id       INTEGER NOT NULL REFERENCES grants(id) ON DELETE CASCADE,
    user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    edge_id        INTEGER NOT NULL REFERENCES edges(id) ON DELETE CASCADE,
    public_key     TEXT    NOT NULL,
    preshared_key  BLOB    NOT NULL,
    tunnel_address INTEGER NOT NULL,          -- IPv4 as u32
    -- Same as tunnel_address while the lease holds it; NULL once revoked or expired and freed.
    -- The unique index below is the backstop against handing one address out twice.
    addr_slot      INTEGER,
    pin            TEXT    NOT NULL,
    ports          TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);

CREATE UNIQUE INDEX leases_addr_slot ON leases(edge_id, addr_slot) WHERE addr_slot IS NOT NULL;
CREATE INDEX leases_edge_live ON leases(edge_id, expires_at) WHERE revoked_at IS NULL;

-- Append-only audit log.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,               -- login_ok, login_failed, lease_issued, ...
    actor     TEXT,                           -- user or edge name, or "admin"
    source_ip TEXT,
    detail    TEXT
);
