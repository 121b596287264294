-- Uploaded videos not examined yet: a file that looks like a video (its type or first bytes)
-- that someone uploaded (not only derived by the gateway, file_owners.source 'transcode') with
-- neither "video" (the probe) nor "video_error" in its meta. The store sets the mark when such
-- an owner's reference is added and clears it when either key is written (storage/files.py); the transcoder lists the marked
-- files at start (a stop or crash between storing and probing loses no announcement, job or
-- NIP-71 event). The index holds only the marked rows, so the start-up query stays small in a
-- store with millions of files. Files stored before this migration are marked by their type
-- (their first bytes are not at hand here).
ALTER TABLE files ADD COLUMN unexamined_video INTEGER;
CREATE INDEX files_unexamined_videos ON files (created_at, sha256) WHERE unexamined_video = 1;
UPDATE files SET unexamined_video = 1
    WHERE substr(mime, 1, 6) = 'video/'
      AND json_extract(meta, '$.video') IS NULL
      AND json_extract(meta, '$.video_error') IS NULL
      AND EXISTS (SELECT 1 FROM file_owners o
                  WHERE o.sha256 = files.sha256 AND o.source NOT IN ('transcode'));
