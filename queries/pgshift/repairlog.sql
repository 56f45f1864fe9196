-- name: InsertRepairEntry :one
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key)
VALUES (@table_schema, @table_name, @key, @op, @routing_key)
RETURNING id;

-- name: DeleteRepairEntries :execrows
DELETE FROM pgshift.repair_log WHERE id = ANY(@ids::bigint[]);

-- name: ClaimRepairEntries :many
-- Due entries, oldest first, locked for this worker; other workers skip them.
SELECT * FROM pgshift.repair_log
WHERE next_attempt_at <= now()
ORDER BY id
LIMIT @batch_size
FOR UPDATE SKIP LOCKED;

-- name: PostponeRepairEntry :exec
UPDATE pgshift.repair_log
SET attempts = attempts + 1,
    next_attempt_at = now() + make_interval(secs => @delay_seconds::float8),
    last_error = @last_error
WHERE id = @id;

-- name: RepairBacklog :one
SELECT count(*)::bigint AS entries,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds
FROM pgshift.repair_log;
