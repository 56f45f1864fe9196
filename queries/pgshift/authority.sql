-- The fence on each routing key's authority (see pgshift.key_authority in
-- schema.sql). All of these run on new; FenceOld runs on old, and
-- LockAuthority, KeyAuthority and RecordAuthority also take, read and write
-- old's mark of the key.

-- name: Fence :exec
-- A dual write's shared lock on its routing key's authority, checked
-- against the side its stage makes authoritative (SQLSTATE PGSF1 when the
-- recorded side is another, or none).
SELECT pgshift.fence(@routing_key::text, @side::text);

-- name: FenceOld :exec
-- On old, the fence of every write under old's authority (SQLSTATE PGSF1
-- when old's mark says new may serve the key).
SELECT pgshift.fence_old(@routing_key::text);

-- name: LockAuthority :exec
-- Takes the routing key's authority alone, for the rest of the
-- transaction: waits for every write of the key holding it shared.
SELECT pg_catalog.pg_advisory_xact_lock(1885827944, pg_catalog.hashtext(@routing_key::text));

-- name: KeyAuthority :one
-- The side recorded for the routing key ('' when none) and whether it is
-- settled. Run after LockAuthority, in a statement of its own (its
-- snapshot then sees every change committed before the lock was held).
SELECT coalesce(a.side, '')::text AS side, coalesce(a.settled, false)::boolean AS settled
FROM (SELECT 1) AS one
LEFT JOIN pgshift.key_authority AS a ON a.routing_key = @routing_key::text;

-- name: RecordAuthority :exec
-- Records the side that serves the routing key from now on, settled or
-- (while the key is caught up for it) not, under LockAuthority.
INSERT INTO pgshift.key_authority (routing_key, side, settled) VALUES (@routing_key::text, @side::text, @settled::boolean)
ON CONFLICT (routing_key) DO UPDATE SET side = excluded.side, settled = excluded.settled, changed_at = now();
