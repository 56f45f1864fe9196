-- name: LockRow :one
-- Takes one row's advisory lock for the rest of the transaction and, once it
-- holds it, draws the row's order (k_order): twice a value of
-- pgshift.row_order, so that the odd numbers between are left for writes that
-- could not lock (see schema.sql). The lock
-- id is computed by the facade from the table and key; sent on new only (the
-- canonical side). The order is also kept for the rest of the transaction
-- in pgshift.k_order, for log records sent in the same round trip. OFFSET 0 keeps the lock's subquery from being flattened,
-- so the order is drawn after the lock is taken.
SELECT pg_catalog.set_config('pgshift.k_order', (2 * pg_catalog.nextval('pgshift.row_order'))::text, true)::bigint AS k_order
FROM (SELECT pg_advisory_xact_lock(@lock_id::bigint) OFFSET 0) AS locked;

-- name: LockRows :one
-- LockRow for several rows, in the order given (the facade sorts the ids, so
-- two writes of the same rows take their locks in the same order); one order
-- for all of them, drawn once every lock is held.
SELECT pg_catalog.set_config('pgshift.k_order', (2 * pg_catalog.nextval('pgshift.row_order'))::text, true)::bigint AS k_order
FROM (SELECT count(pg_advisory_xact_lock(l.id)) FROM pg_catalog.unnest(@lock_ids::bigint[]) AS l (id) OFFSET 0) AS locked;

-- name: SetLockTimeout :exec
-- Bounds, for the rest of the transaction, how long a lock is waited for
-- (milliseconds): a row another write holds then fails with SQLSTATE 55P03,
-- which a server that does not answer never does. The bound in force before
-- is kept for ResetLockTimeout.
SELECT pg_catalog.set_config('pgshift.lock_timeout', pg_catalog.current_setting('lock_timeout'), true),
       pg_catalog.set_config('lock_timeout', @milliseconds::text, true);

-- name: ResetLockTimeout :exec
-- Undoes SetLockTimeout: the bound in force before it again.
SELECT pg_catalog.set_config('lock_timeout', pg_catalog.current_setting('pgshift.lock_timeout'), true);

-- name: LogRow :one
-- Records one row of a write in the write's own transaction. Without an
-- order, the row takes the one its transaction drew last on this server, if
-- any (its lock was taken in the same round trip).
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key, pull, k_order)
VALUES (@table_schema::text, @table_name::text, @key::text[], @op, @routing_key, @pull,
        coalesce(sqlc.narg(k_order)::bigint, nullif(pg_catalog.current_setting('pgshift.k_order', true), '')::bigint))
RETURNING id;

-- name: LogRows :many
-- LogRow for several rows; keys holds each row's primary key as a JSON array
-- of strings, orders each row's order (0: none known). The arrays are read
-- side by side (ROWS FROM), never subscripted: a subscript of a text[]
-- walks it from its start, so n rows would cost n² steps.
INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key, pull, k_order)
SELECT t.table_schema, t.table_name,
       ARRAY(SELECT json_array_elements_text(t.key_json::json)),
       @op, @routing_key, @pull,
       coalesce(nullif(t.k_order, 0), nullif(pg_catalog.current_setting('pgshift.k_order', true), '')::bigint)
FROM ROWS FROM (pg_catalog.unnest(@keys::text[]), pg_catalog.unnest(@table_schemas::text[]),
                pg_catalog.unnest(@table_names::text[]), pg_catalog.unnest(@orders::bigint[]))
     WITH ORDINALITY AS t (key_json, table_schema, table_name, k_order, n)
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

-- name: DeleteClaimedEntries :exec
-- DeleteRepairEntries for entries this transaction claimed (and so holds
-- locked): the repair worker's settled entries, deleted without locking
-- them again.
WITH settled AS (
    DELETE FROM pgshift.repair_log
    WHERE id = ANY(@ids::bigint[])
    RETURNING table_schema, table_name, key
)
INSERT INTO pgshift.changed_rows AS c (table_schema, table_name, key)
SELECT DISTINCT table_schema, table_name, key FROM settled
ORDER BY 1, 2, 3
ON CONFLICT (table_schema, table_name, key) DO UPDATE SET changed_at = now()
WHERE c.changed_at < now() - interval '10 seconds';

-- name: PlanClaimByIndex :exec
-- Turns sorts off for this transaction's next statements, keeping the
-- setting in force before for PlanFreely: a claim then reads its batch in
-- repair_log_next_attempt_at_idx's order whatever the planner believes of
-- the log's size. A log an outage filled has never been analyzed; the
-- planner takes it for a few thousand entries and, for a batch near that,
-- read every due entry and sorted them all, on every pass (680 ms for a
-- batch of 10,000 from a log of 100,000, against 24 ms in index order):
-- a drain that slowed as the square of its backlog.
SELECT pg_catalog.set_config('pgshift.enable_sort', pg_catalog.current_setting('enable_sort'), true),
       pg_catalog.set_config('enable_sort', 'off', true);

-- name: PlanFreely :exec
-- Undoes PlanClaimByIndex.
SELECT pg_catalog.set_config('enable_sort', pg_catalog.current_setting('pgshift.enable_sort'), true);

-- name: ClaimRepairEntries :many
-- Due entries older than the grace period (writes still in flight confirm
-- their own), the longest due first, locked for this worker; other workers
-- skip them. The order is the one of repair_log_next_attempt_at_idx (ordered
-- by id, a log never analyzed, one an outage filled, was read and sorted
-- whole on every pass); after PlanClaimByIndex a pass reads only its batch,
-- from the index, whatever the planner believes of the log.
SELECT * FROM pgshift.repair_log
WHERE next_attempt_at <= now()
  AND created_at <= now() - pg_catalog.make_interval(secs => @grace_seconds::float8)
ORDER BY next_attempt_at, id
LIMIT @batch_size
FOR UPDATE SKIP LOCKED;

-- name: KeyHasEntries :one
-- Whether this side's log holds entries of a routing key: what the facade
-- checks before a new authority serves the key (see ClaimKeyEntries).
SELECT EXISTS (SELECT 1 FROM pgshift.repair_log WHERE routing_key = @routing_key::text AND routing_key <> '')::boolean AS found;

-- name: ClaimKeyEntries :many
-- The entries of one routing key, due or not, oldest first, locked for this
-- caller: the facade repairs them before a new authority serves the key. It
-- waits for entries another worker holds (which settles them meanwhile).
SELECT * FROM pgshift.repair_log
WHERE routing_key = @routing_key::text AND routing_key <> ''
ORDER BY id
LIMIT @batch_size
FOR UPDATE;

-- name: RowEntries :many
-- The entries of the given rows on this side: per row, the greatest k_order
-- of its authoritative entries and of its pull entries (0 when an entry has
-- none, -1 when there is no entry of that kind): what the repair worker
-- weighs a claimed entry against. keys as in LogRows; n is the row's position
-- in keys, from 1. Each row is looked up on its own (LATERAL), through
-- repair_log_key_hash_idx (the key's hash, then the key): as a join, a log
-- never analyzed was scanned whole for every batch. The arrays are read
-- side by side, as in LogRows.
SELECT t.n::int AS n, e.push_order, e.pull_order
FROM ROWS FROM (pg_catalog.unnest(@keys::text[]), pg_catalog.unnest(@table_schemas::text[]),
                pg_catalog.unnest(@table_names::text[]))
     WITH ORDINALITY AS t (key_json, table_schema, table_name, n)
CROSS JOIN LATERAL (SELECT ARRAY(SELECT json_array_elements_text(t.key_json::json)) AS key) AS k (key)
CROSS JOIN LATERAL (
    SELECT coalesce(max(coalesce(l.k_order, 0)) FILTER (WHERE NOT l.pull), -1)::bigint AS push_order,
           coalesce(max(coalesce(l.k_order, 0)) FILTER (WHERE l.pull), -1)::bigint AS pull_order,
           count(*) AS entries
    FROM pgshift.repair_log AS l
    WHERE l.table_schema = t.table_schema AND l.table_name = t.table_name
      AND pg_catalog.hash_array_extended(l.key, 0) OPERATOR(pg_catalog.=) pg_catalog.hash_array_extended(k.key, 0)
      AND l.key OPERATOR(pg_catalog.=) k.key
) AS e
WHERE e.entries > 0;

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

-- name: LastRowOrder :one
-- The last order any write drew on this server (0 before the first): the
-- facade's repair worker reads it on new now and then, so that a write that
-- cannot lock its rows (new does not answer) still orders after the writes
-- other processes locked meanwhile (see the facade's unlockedOrder).
SELECT coalesce(pg_catalog.pg_sequence_last_value('pgshift.row_order'::pg_catalog.regclass), 0)::bigint AS last_order;
