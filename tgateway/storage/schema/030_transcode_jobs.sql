-- The transcoding queue: one job per source video (sha256). Jobs survive restarts: a job found
-- 'running' at start-up was interrupted and is queued again (FFmpeg cannot resume a file).
-- Order: priority (higher first), then shorter videos, then older jobs.
CREATE TABLE transcode_jobs (
    sha256        TEXT PRIMARY KEY,               -- the source file
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    priority      INTEGER NOT NULL DEFAULT 0,
    duration      REAL NOT NULL DEFAULT 0,        -- seconds, from the probe
    probe         TEXT NOT NULL DEFAULT '{}',     -- JSON ProbeResult
    progress      REAL NOT NULL DEFAULT 0,        -- percent, last saved
    attempts      INTEGER NOT NULL DEFAULT 0,
    error         TEXT,                           -- readable reason of the last failure
    stderr_tail   TEXT,                           -- the end of FFmpeg's stderr on failure
    results       TEXT NOT NULL DEFAULT '{}',     -- JSON: variants, HLS playlists, segments
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL
);
CREATE INDEX transcode_jobs_next ON transcode_jobs (state, priority DESC, duration, created_at);
