-- name: BackfillResumePoint :one
-- The last chunk an earlier backfill of the table committed, and its last
-- key ('{}' when the table is done).
SELECT chunk, last_key FROM pgshift.backfill_progress
WHERE table_schema = @table_schema AND table_name = @table_name
ORDER BY chunk DESC
LIMIT 1;

-- name: RecordBackfillChunk :exec
-- Written in the chunk's own transaction on new, so a committed chunk is
-- always recorded and a recorded chunk always committed.
INSERT INTO pgshift.backfill_progress (table_schema, table_name, chunk, last_key, rows_copied)
VALUES (@table_schema, @table_name, @chunk, @last_key, @rows_copied);

-- name: ForgetBackfillProgress :exec
DELETE FROM pgshift.backfill_progress
WHERE table_schema = @table_schema AND table_name = @table_name;
