-- name: RecordVerifyRun :exec
INSERT INTO pgshift.verify_runs (table_schema, table_name, kind, started_at, rows_checked, differences, repaired, equal)
VALUES (@table_schema, @table_name, @kind, @started_at, @rows_checked, @differences, @repaired, @equal);

-- name: LatestVerifyRuns :many
-- The latest verify (full or of the changed rows) of each table of a schema.
SELECT DISTINCT ON (table_name) table_name, kind, started_at, finished_at, rows_checked, differences, repaired, equal
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
VALUES (pg_catalog.date_trunc('minute', now()), @op, @reads, @mismatches)
ON CONFLICT (minute, op) DO UPDATE
SET reads = pgshift.shadow_reads.reads + EXCLUDED.reads,
    mismatches = pgshift.shadow_reads.mismatches + EXCLUDED.mismatches;

-- name: RoutingKeyPending :one
-- Whether this side's repair log holds an entry of a routing key (any entry
-- when the key is empty): a shadow read that found a difference for it counts
-- it as pending repair, not as a mismatch.
SELECT EXISTS (
    SELECT 1 FROM pgshift.repair_log
    WHERE @routing_key::text OPERATOR(pg_catalog.=) '' OR routing_key OPERATOR(pg_catalog.=) @routing_key::text
) AS pending;

-- name: ShadowReadsSince :one
SELECT coalesce(sum(reads), 0)::bigint AS reads, coalesce(sum(mismatches), 0)::bigint AS mismatches
FROM pgshift.shadow_reads
WHERE minute >= pg_catalog.date_trunc('minute', @since::timestamptz);

-- name: RecordUserShadowReads :exec
-- Adds shadow-read counts of users to their minute; the arrays are one
-- element per user (routing key, attributes as JSON).
INSERT INTO pgshift.shadow_reads_by_user AS s (minute, routing_key, attributes, reads, mismatches)
SELECT pg_catalog.date_trunc('minute', now()),
       pg_catalog.unnest(@routing_keys::text[]), pg_catalog.unnest(@attributes::text[])::jsonb,
       pg_catalog.unnest(@reads::bigint[]), pg_catalog.unnest(@mismatches::bigint[])
ON CONFLICT (minute, routing_key, attributes) DO UPDATE
SET reads = s.reads + EXCLUDED.reads,
    mismatches = s.mismatches + EXCLUDED.mismatches;

-- name: ForgetUserShadowReads :execrows
-- Drops the per-user shadow-read counts older than a time.
DELETE FROM pgshift.shadow_reads_by_user WHERE minute < @before::timestamptz;

-- name: UserShadowReadsSince :many
-- Each user's shadow reads and mismatches since a time.
SELECT routing_key, attributes::text AS attributes, sum(reads)::bigint AS reads, sum(mismatches)::bigint AS mismatches
FROM pgshift.shadow_reads_by_user
WHERE minute >= pg_catalog.date_trunc('minute', @since::timestamptz)
GROUP BY routing_key, attributes;

-- name: LastFullVerify :one
-- The latest full verify of one table.
SELECT started_at, equal
FROM pgshift.verify_runs
WHERE table_schema = @table_schema AND table_name = @table_name AND kind = 'full'
ORDER BY finished_at DESC
LIMIT 1;

-- name: BackfillFinishedAt :one
-- Whether one table's backfill has chunks (planned), whether all of them
-- are done, and when the last one finished (the epoch when none has).
SELECT (count(*) > 0)::boolean AS planned, coalesce(bool_and(done_at IS NOT NULL), false)::boolean AS done,
       coalesce(max(done_at), 'epoch')::timestamptz AS finished_at
FROM pgshift.backfill_chunks
WHERE table_schema = @table_schema AND table_name = @table_name;

-- name: ChangedKeys :many
-- The keys of one table's rows that dual writes changed since a time (the
-- dual-write history), and those still waiting in the repair log.
SELECT c.key FROM pgshift.changed_rows AS c
WHERE c.table_schema = @table_schema::text AND c.table_name = @table_name::text AND c.changed_at >= @since::timestamptz
UNION
SELECT l.key FROM pgshift.repair_log AS l
WHERE l.table_schema = @table_schema::text AND l.table_name = @table_name::text;

-- name: ForgetChangedRows :execrows
-- Drops one table's dual-write history from before a time (a full verify
-- that began after it has compared those rows).
DELETE FROM pgshift.changed_rows
WHERE table_schema = @table_schema AND table_name = @table_name AND changed_at < @before;
