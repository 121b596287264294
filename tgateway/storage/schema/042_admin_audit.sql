-- Every admin action (deletions, user changes, reports handled, transcodes queued), newest last.
CREATE TABLE admin_audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            REAL NOT NULL,                  -- unix seconds
    admin         TEXT NOT NULL,                  -- the admin's hex pubkey
    action        TEXT NOT NULL,                  -- file.delete, user.update, report.dismiss ...
    target        TEXT NOT NULL,                  -- a sha256, pubkey or report id
    detail        TEXT NOT NULL DEFAULT '{}'      -- JSON: what was asked and what it did
);
CREATE INDEX admin_audit_by_target ON admin_audit (target, id);
