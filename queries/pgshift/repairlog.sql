-- name: LockRow :one
-- Takes one row's advisory lock for the rest of the transaction and returns
-- the transaction's id, which orders the row's log entries (k_xid). The lock
-- id is computed by the facade from the table and key; sent on new only (the
-- canonical side).
SELECT pg_current_xact_id()::text::bigint AS k_xid
FROM (SELECT pg_advisory_xact_lock(@lock_id::bigint)) AS locked;

-- name: LockRows :one
-- LockRow for several rows, in the order given (the facade sorts the ids, so
-- two writes of the same rows take their locks in the same order).
SELECT pg_current_xact_id()::text::bigint AS k_xid
FROM (SELECT count(pg_advisory_xact_lock(l.id)) FROM pg_catalog.unnest(@lock_ids::bigint[]) AS l (id)) AS locked;

-- name: LogRow :one
-- Records one row of a write in the write's own transaction.
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key, pull, k_xid)
VALUES (@table_schema::text, @table_name::text, @key::text[], @op, @routing_key, @pull, sqlc.narg(k_xid)::bigint)
RETURNING id;

-- name: LogRows :many
-- LogRow for several rows; keys holds each row's primary key as a JSON array
-- of strings.
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key, pull, k_xid)
SELECT (@table_schemas::text[])[t.n], (@table_names::text[])[t.n],
       ARRAY(SELECT json_array_elements_text(t.key_json::json)),
       @op, @routing_key, @pull, sqlc.narg(k_xid)::bigint
FROM pg_catalog.unnest(@keys::text[]) WITH ORDINALITY AS t (key_json, n)
ORDER BY t.n
RETURNING id;

-- name: DeleteRepairEntries :exec
-- Deletes settled entries and keeps their rows in the dual-write history
-- (changed_rows): the facade's confirmed entries, and the repair worker's
-- repaired ones, which its own transaction holds locked (SKIP LOCKED skips
-- only other transactions' locks). Entries another repair worker holds are
-- skipped (it settles them itself). Rows are upserted in key order, so two
-- of these never wait for each other in a cycle.
WITH settled AS (
    DELETE FROM pgshift.repair_log
    WHERE id IN (
        SELECT id FROM pgshift.repair_log
        WHERE id = ANY(@ids::bigint[])
        FOR UPDATE SKIP LOCKED
    )
    RETURNING table_schema, table_name, key
)
INSERT INTO pgshift.changed_rows AS c (table_schema, table_name, key)
SELECT DISTINCT table_schema, table_name, key FROM settled
ORDER BY 1, 2, 3
ON CONFLICT (table_schema, table_name, key) DO UPDATE SET changed_at = now()
WHERE c.changed_at < now() - interval '10 seconds';

-- name: ClaimRepairEntries :many
-- Due entries older than the grace period (writes still in flight confirm
-- their own), oldest first, locked for this worker; other workers skip them.
SELECT * FROM pgshift.repair_log
WHERE next_attempt_at <= now()
  AND created_at <= now() - pg_catalog.make_interval(secs => @grace_seconds::float8)
ORDER BY id
LIMIT @batch_size
FOR UPDATE SKIP LOCKED;

-- name: AuthoritativeEntries :many
-- The authoritative (pull = false) entries of the given rows on this side,
-- newest k_xid per row (0 when none is known): what the repair worker weighs
-- an entry against. keys as in LogRows.
-- n is the row's position in keys, from 1.
SELECT t.n::int AS n, coalesce(max(l.k_xid), 0)::bigint AS k_xid, max(l.created_at)::timestamptz AS created_at
FROM pg_catalog.unnest(@keys::text[]) WITH ORDINALITY AS t (key_json, n)
JOIN pgshift.repair_log AS l
  ON l.table_schema = (@table_schemas::text[])[t.n] AND l.table_name = (@table_names::text[])[t.n]
 AND l.key OPERATOR(pg_catalog.=) ARRAY(SELECT json_array_elements_text(t.key_json::json)) AND NOT l.pull
GROUP BY t.n;

-- name: PostponeRepairEntries :exec
UPDATE pgshift.repair_log
SET attempts = attempts + 1,
    next_attempt_at = now() + pg_catalog.make_interval(secs => least(60, pg_catalog.power(2, least(attempts, 12)) * @base_delay_seconds::float8)),
    last_error = @last_error
WHERE id = ANY(@ids::bigint[]);

-- name: RepairBacklog :one
SELECT count(*)::bigint AS entries,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds
FROM pgshift.repair_log;

-- name: RetryPostponedEntries :execrows
-- Makes every entry waiting out a back-off after a failed attempt due now:
-- an operator's `pgshift repair` tries them at once.
UPDATE pgshift.repair_log
SET next_attempt_at = now()
WHERE next_attempt_at > now();
