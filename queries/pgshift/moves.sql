-- name: RecordMove :exec
INSERT INTO pgshift.moves (flag_file, cohort, from_stage, to_stage, forced, undo, stages_before, stages_after)
VALUES (@flag_file, @cohort, @from_stage, @to_stage, @forced, @undo, @stages_before::text[], @stages_after::text[]);

-- name: OneSidedPeriod :one
-- Whether a cohort can be in @stage now (after the latest recorded move),
-- and when the last period in which one could ended: the latest move made
-- while one could (the epoch when none was).
SELECT
    coalesce((SELECT @stage::text = ANY (m.stages_after) FROM pgshift.moves AS m ORDER BY m.moved_at DESC, m.id DESC LIMIT 1), false)::boolean AS ongoing,
    coalesce((SELECT max(m.moved_at) FROM pgshift.moves AS m WHERE @stage::text = ANY (m.stages_before)), 'epoch')::timestamptz AS ended_at;

-- name: FullyVerifiedSince :many
-- The tables of a schema with a full, equal verify that started after a time.
SELECT DISTINCT table_name::text AS table_name
FROM pgshift.verify_runs
WHERE table_schema = @table_schema AND kind = 'full' AND equal AND started_at > @since::timestamptz;
