-- BUD-09 blob reports: signed NIP-56 (kind 1984) events received on PUT /report, kept for the
-- admin. One row per event (verbatim JSON) and one row per reported blob.
CREATE TABLE blossom_reports (
    id            TEXT PRIMARY KEY,               -- event id, 64 lowercase hex
    pubkey        TEXT NOT NULL,                  -- the reporter
    created_at    INTEGER NOT NULL,               -- the event's created_at
    content       TEXT NOT NULL,
    event_json    TEXT NOT NULL,                  -- the signed event as received
    client_ip     TEXT,                           -- NULL unless client-IP logging is on
    received_at   REAL NOT NULL,                  -- unix seconds
    status        TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'dismissed', 'actioned'))
);
CREATE INDEX blossom_reports_by_time ON blossom_reports (status, received_at);

CREATE TABLE blossom_report_blobs (
    report_id     TEXT NOT NULL REFERENCES blossom_reports (id) ON DELETE CASCADE,
    sha256        TEXT NOT NULL,
    type          TEXT NOT NULL DEFAULT '',       -- NIP-56 report type (nudity, malware, ...)
    PRIMARY KEY (report_id, sha256)
) WITHOUT ROWID;
CREATE INDEX blossom_report_blobs_by_blob ON blossom_report_blobs (sha256);
