-- name: LockBackfillPlan :exec
-- Serialises the planning of one table's chunks among backfill processes,
-- until the end of the transaction.
SELECT pg_advisory_xact_lock(pg_catalog.hashtextextended('pgshift.backfill ' || @table_schema::text || '.' || @table_name::text, 0));

-- name: BackfillChunkCount :one
SELECT count(*) FROM pgshift.backfill_chunks
WHERE table_schema = @table_schema AND table_name = @table_name;

-- name: PlanBackfillChunk :exec
INSERT INTO pgshift.backfill_chunks (table_schema, table_name, chunk, after_key, upto_key)
VALUES (@table_schema, @table_name, @chunk, @after_key, @upto_key);

-- name: LeaseBackfillChunk :one
-- Leases the first chunk of the table that is not done and not leased by
-- another worker (or whose lease expired); chunks other workers hold locked
-- at this instant are skipped, not waited for.
UPDATE pgshift.backfill_chunks c
SET leased_by = @worker::text, lease_until = now() + pg_catalog.make_interval(secs => @lease_seconds::float8)
WHERE (c.table_schema, c.table_name, c.chunk) = (
    SELECT f.table_schema, f.table_name, f.chunk FROM pgshift.backfill_chunks f
    WHERE f.table_schema = @table_schema AND f.table_name = @table_name AND f.done_at IS NULL
      AND (f.lease_until IS NULL OR f.lease_until < now())
    ORDER BY f.chunk
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING c.chunk, c.after_key, c.upto_key, c.copied_upto;

-- name: RecordBackfillPiece :execrows
-- Written in the transaction that copied the piece, so committed rows are
-- always recorded and recorded rows always committed. It also renews the
-- lease; no row is updated when the lease went to another worker.
UPDATE pgshift.backfill_chunks
SET copied_upto = @copied_upto, rows_copied = rows_copied + @rows,
    lease_until = now() + pg_catalog.make_interval(secs => @lease_seconds::float8),
    done_at = CASE WHEN @done::bool THEN now() END
WHERE table_schema = @table_schema AND table_name = @table_name AND chunk = @chunk AND leased_by = @worker::text;

-- name: BackfillTableProgress :one
-- How far the table's backfill is, over every worker: chunks done, leased
-- (lease not expired) and in all; rows copied.
SELECT count(*) FILTER (WHERE done_at IS NOT NULL) AS done,
       count(*) FILTER (WHERE done_at IS NULL AND lease_until > now()) AS leased,
       count(*) AS chunks,
       coalesce(sum(rows_copied), 0)::bigint AS rows_copied
FROM pgshift.backfill_chunks
WHERE table_schema = @table_schema AND table_name = @table_name;

-- name: BackfillJobs :many
-- Every table with a backfill plan, and how far it is: for status.
SELECT table_schema, table_name,
       count(*) FILTER (WHERE done_at IS NOT NULL) AS done,
       count(*) FILTER (WHERE done_at IS NULL AND lease_until > now()) AS leased,
       count(*) AS chunks,
       coalesce(sum(rows_copied), 0)::bigint AS rows_copied,
       count(DISTINCT leased_by) FILTER (WHERE done_at IS NULL AND lease_until > now()) AS workers
FROM pgshift.backfill_chunks
GROUP BY table_schema, table_name
ORDER BY table_schema, table_name;

-- name: ForgetBackfill :exec
DELETE FROM pgshift.backfill_chunks
WHERE table_schema = @table_schema AND table_name = @table_name;
