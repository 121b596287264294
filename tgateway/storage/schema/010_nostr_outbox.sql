-- The Nostr outbox: an event to publish is stored first, then delivered to each target relay.
-- One row per event (its signed JSON, verbatim) and one row per (event, relay) delivery.
CREATE TABLE nostr_outbox_events (
    id            TEXT PRIMARY KEY,               -- event id, 64 lowercase hex
    kind          INTEGER NOT NULL,
    event_json    TEXT NOT NULL,                  -- the signed event as sent on the wire
    ref           TEXT,                           -- what it announces, e.g. a file's sha256
    queued_at     REAL NOT NULL                   -- unix seconds
);
CREATE INDEX nostr_outbox_events_by_ref ON nostr_outbox_events (ref, queued_at);

-- status: pending (to send, at next_attempt_at), accepted (OK true, or a duplicate),
-- rejected (OK false for good: invalid, blocked, ...), failed (gave up on transient errors).
CREATE TABLE nostr_outbox_deliveries (
    event_id         TEXT NOT NULL REFERENCES nostr_outbox_events (id) ON DELETE CASCADE,
    relay_url        TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'accepted', 'rejected', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    message          TEXT NOT NULL DEFAULT '',    -- the relay's OK message, or our error
    next_attempt_at  REAL NOT NULL,
    updated_at       REAL NOT NULL,
    PRIMARY KEY (event_id, relay_url)
) WITHOUT ROWID;
CREATE INDEX nostr_outbox_due ON nostr_outbox_deliveries (status, next_attempt_at);
