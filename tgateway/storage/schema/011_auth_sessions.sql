-- Sign-in sessions. The bearer token itself is never stored: only its SHA-256 (hex), so a copy
-- of the database does not let anyone sign in. A row is dead once expires_at has passed.
CREATE TABLE auth_sessions (
    token_sha256  TEXT PRIMARY KEY,               -- hex SHA-256 of the bearer token
    pubkey        TEXT NOT NULL,                  -- the user's hex public key
    method        TEXT NOT NULL,                  -- nip07 | nip46
    created_at    REAL NOT NULL,                  -- unix seconds
    expires_at    REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX auth_sessions_by_expiry ON auth_sessions (expires_at);
CREATE INDEX auth_sessions_by_pubkey ON auth_sessions (pubkey);
