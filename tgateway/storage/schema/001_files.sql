-- The content store: one row per distinct content (sha256), its chunks, and who owns it.
CREATE TABLE files (
    sha256        TEXT PRIMARY KEY,               -- hex SHA-256 of the whole file
    size          INTEGER NOT NULL,
    name          TEXT NOT NULL,                  -- name in the torrent info dict (first uploader's)
    mime          TEXT NOT NULL,
    storage       TEXT NOT NULL CHECK (storage IN ('blob', 'chunked')),
    piece_length  INTEGER NOT NULL,
    info_hash     TEXT NOT NULL UNIQUE,           -- hex BitTorrent v1 info-hash
    info          BLOB NOT NULL,                  -- bencoded info dict, verbatim
    created_at    REAL NOT NULL,
    meta          TEXT NOT NULL DEFAULT '{}'      -- JSON: probe results and other facts
);
CREATE INDEX files_created ON files (created_at);

-- Ordered chunk list of a chunked file; chunk i is piece i. Chunks are shared between files.
CREATE TABLE file_chunks (
    file_sha256   TEXT NOT NULL REFERENCES files (sha256) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    chunk_sha256  TEXT NOT NULL,
    offset        INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    PRIMARY KEY (file_sha256, idx)
) WITHOUT ROWID;
CREATE INDEX file_chunks_by_chunk ON file_chunks (chunk_sha256);

-- Who uploaded what. owner '' is the anonymous owner. A file's bytes go when no row is left.
CREATE TABLE file_owners (
    sha256        TEXT NOT NULL REFERENCES files (sha256) ON DELETE CASCADE,
    owner         TEXT NOT NULL,
    name          TEXT NOT NULL,
    title         TEXT,
    description   TEXT,
    announce_dht  INTEGER NOT NULL DEFAULT 1,
    source        TEXT NOT NULL DEFAULT 'api',
    created_at    REAL NOT NULL,
    PRIMARY KEY (sha256, owner)
) WITHOUT ROWID;
CREATE INDEX file_owners_by_owner ON file_owners (owner, created_at);
