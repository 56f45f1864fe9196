-- name: RecordFacade :exec
-- A facade's report of itself (see pgshift.facades), as of now.
INSERT INTO pgshift.facades (instance, host, pid, started_at, breaker_old, breaker_new, skipped_old, skipped_new)
VALUES (@instance, @host, @pid, @started_at, @breaker_old, @breaker_new, @skipped_old, @skipped_new)
ON CONFLICT (instance) DO UPDATE
SET seen_at = now(), breaker_old = EXCLUDED.breaker_old, breaker_new = EXCLUDED.breaker_new,
    skipped_old = EXCLUDED.skipped_old, skipped_new = EXCLUDED.skipped_new;

-- name: ForgetFacade :exec
-- Deletes a facade's row (it closed), and rows no process refreshed for a day.
DELETE FROM pgshift.facades WHERE instance = @instance OR seen_at < now() - interval '1 day';

-- name: RecentFacades :many
-- The facades that reported themselves in the last within_seconds, with how
-- long ago, by this server's clock.
SELECT instance, host, pid, started_at, breaker_old, breaker_new, skipped_old, skipped_new,
       extract(epoch FROM now() - seen_at)::float8 AS seen_seconds_ago
FROM pgshift.facades
WHERE seen_at > now() - pg_catalog.make_interval(secs => @within_seconds::float8)
ORDER BY instance;
