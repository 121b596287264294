-- What an admin decided about a user (a Nostr pubkey): a storage limit of their own instead of
-- admin.default_user_storage_limit, and a ban. A user with neither has no row.
CREATE TABLE users (
    pubkey         TEXT PRIMARY KEY,              -- hex pubkey
    storage_limit  INTEGER,                       -- bytes; NULL: admin.default_user_storage_limit
    banned         INTEGER NOT NULL DEFAULT 0,
    banned_at      REAL,                          -- unix seconds of the ban in force
    updated_by     TEXT NOT NULL,                 -- the admin's hex pubkey
    updated_at     REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX users_banned ON users (banned) WHERE banned = 1;
