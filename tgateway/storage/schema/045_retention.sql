-- Retention (issue 18): when each file was last read, and when each user last signed in.
-- last_access is written in batches by the access log (storage/access.py), never per request;
-- NULL: not read since it was stored. A file's last use is the newest of its created_at, its
-- last_access, its newest owner's upload and the last use of the files derived from it.
ALTER TABLE files ADD COLUMN last_access REAL;
CREATE INDEX files_last_use ON files (coalesce(last_access, created_at));

-- The last sign-in of each user (sessions expire and are swept: this row stays). A user with no
-- sign-in and no upload for admin.inactive_user_age loses this row, their sessions and their
-- own storage limit (never a ban); their files follow the files' rules.
CREATE TABLE user_activity (
    pubkey        TEXT PRIMARY KEY,               -- hex pubkey
    signed_in_at  REAL NOT NULL                   -- unix seconds of the last sign-in
) WITHOUT ROWID;
CREATE INDEX user_activity_by_time ON user_activity (signed_in_at);
INSERT INTO user_activity (pubkey, signed_in_at)
    SELECT pubkey, max(created_at) FROM auth_sessions GROUP BY pubkey;
