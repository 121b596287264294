-- The block list's files: content an admin deleted, never accepted again (upload, Blossom,
-- mirror, /media, swarm fetch) and refused by the tracker, the DHT node and the peer by its
-- info-hash. A tombstone outlives the file's rows (files, file_owners) on purpose.
CREATE TABLE blocked_files (
    sha256        TEXT PRIMARY KEY,               -- hex SHA-256 of the file
    info_hash     TEXT,                           -- hex v1 info-hash (NULL: never stored here)
    reason        TEXT NOT NULL DEFAULT '',
    blocked_by    TEXT NOT NULL,                  -- the admin's hex pubkey
    blocked_at    REAL NOT NULL                   -- unix seconds
) WITHOUT ROWID;
CREATE UNIQUE INDEX blocked_files_by_info_hash ON blocked_files (info_hash)
    WHERE info_hash IS NOT NULL;
