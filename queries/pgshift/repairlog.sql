-- name: LogTouchedRows :many
-- Records the rows one write touched, in the write's own transaction, and
-- takes each row's advisory lock (pgshift.row_lock_id) in key order so that
-- the repair worker cannot copy the row until this transaction ends.
-- keys holds each row's primary key as a JSON array of strings.
WITH touched AS (
    SELECT t.n,
           (@table_schemas::text[])[t.n] AS table_schema,
           (@table_names::text[])[t.n] AS table_name,
           ARRAY(SELECT json_array_elements_text(t.key_json::json)) AS key
    FROM unnest(@keys::text[]) WITH ORDINALITY AS t (key_json, n)
), locked AS (
    SELECT touched.*,
           pg_advisory_xact_lock(pgshift.row_lock_id(touched.table_schema, touched.table_name, touched.key))::text AS locked
    FROM touched
    ORDER BY n
)
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key)
SELECT locked.table_schema, locked.table_name, locked.key, @op, @routing_key
FROM locked
ORDER BY locked.n
RETURNING id;

-- name: DeleteRepairEntries :execrows
-- Entries a repair worker holds are skipped; it deletes them itself.
DELETE FROM pgshift.repair_log
WHERE id IN (
    SELECT id FROM pgshift.repair_log
    WHERE id = ANY(@ids::bigint[])
    FOR UPDATE SKIP LOCKED
);

-- name: ClaimRepairEntries :many
-- Due entries older than the grace period (writes still in flight confirm
-- their own), oldest first, locked for this worker; other workers skip them.
SELECT * FROM pgshift.repair_log
WHERE next_attempt_at <= now()
  AND created_at <= now() - make_interval(secs => @grace_seconds::float8)
ORDER BY id
LIMIT @batch_size
FOR UPDATE SKIP LOCKED;

-- name: LockRows :exec
-- Takes the advisory locks of the given rows (see LogTouchedRows), in order.
SELECT pg_advisory_xact_lock(pgshift.row_lock_id((@table_schemas::text[])[t.n], (@table_names::text[])[t.n],
           ARRAY(SELECT json_array_elements_text(t.key_json::json))))::text
FROM unnest(@keys::text[]) WITH ORDINALITY AS t (key_json, n)
ORDER BY t.n;

-- name: DeleteRepairEntriesHeld :execrows
-- Deletes entries this worker holds locked.
DELETE FROM pgshift.repair_log WHERE id = ANY(@ids::bigint[]);

-- name: PostponeRepairEntries :exec
UPDATE pgshift.repair_log
SET attempts = attempts + 1,
    next_attempt_at = now() + make_interval(secs => least(60, power(2, least(attempts, 12)) * @base_delay_seconds::float8)),
    last_error = @last_error
WHERE id = ANY(@ids::bigint[]);

-- name: RepairBacklog :one
SELECT count(*)::bigint AS entries,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds
FROM pgshift.repair_log;

-- name: LogTouchedRow :one
-- LogTouchedRows for the common write that touches one row: the same record
-- and lock, without unpacking arrays.
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key)
SELECT @table_schema::text, @table_name::text, @key::text[], @op, @routing_key
FROM (SELECT pg_advisory_xact_lock(pgshift.row_lock_id(@table_schema::text, @table_name::text, @key::text[]))) AS locked
RETURNING id;
