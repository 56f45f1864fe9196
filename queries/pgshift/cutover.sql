-- name: RecordVerifyRun :exec
INSERT INTO pgshift.verify_runs (table_schema, table_name, started_at, rows_checked, differences, repaired, equal)
VALUES (@table_schema, @table_name, @started_at, @rows_checked, @differences, @repaired, @equal);

-- name: LatestVerifyRuns :many
-- The latest verify of each table of a schema.
SELECT DISTINCT ON (table_name) table_name, started_at, finished_at, rows_checked, differences, repaired, equal
FROM pgshift.verify_runs
WHERE table_schema = @table_schema
ORDER BY table_name, finished_at DESC;

-- name: BackfilledTables :many
-- The tables of a schema whose backfill finished.
SELECT table_name::text AS table_name
FROM pgshift.backfill_chunks
WHERE table_schema = @table_schema
GROUP BY table_name
HAVING bool_and(done_at IS NOT NULL);

-- name: RecordShadowReads :exec
-- Adds shadow-read counts to their minute and operation.
INSERT INTO pgshift.shadow_reads (minute, op, reads, mismatches)
VALUES (date_trunc('minute', now()), @op, @reads, @mismatches)
ON CONFLICT (minute, op) DO UPDATE
SET reads = pgshift.shadow_reads.reads + EXCLUDED.reads,
    mismatches = pgshift.shadow_reads.mismatches + EXCLUDED.mismatches;

-- name: ShadowReadsSince :one
SELECT coalesce(sum(reads), 0)::bigint AS reads, coalesce(sum(mismatches), 0)::bigint AS mismatches
FROM pgshift.shadow_reads
WHERE minute >= date_trunc('minute', @since::timestamptz);
