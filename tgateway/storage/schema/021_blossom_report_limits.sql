-- BUD-09 report limits: open reports are counted per reporter when a report arrives.
CREATE INDEX blossom_reports_by_pubkey ON blossom_reports (pubkey, status);
