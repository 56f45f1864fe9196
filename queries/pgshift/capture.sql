-- name: MarkCapture :exec
-- Marks the transaction as a facade write whose changed rows the capture
-- triggers record ('on'), for the rest of the transaction.
SELECT set_config('pgshift.capture', @mode::text, true);

-- name: TakeCaptured :one
-- The rows the capture triggers recorded in this transaction so far, one
-- JSON array [schema, table, [key...]] per line; they are forgotten.
SELECT pgshift.take_captured()::text AS captured;

-- name: CaptureTriggers :many
-- pgshift's triggers on application tables, with the functions they call.
SELECT n.nspname::text AS table_schema, c.relname::text AS table_name, t.tgname::text AS trigger_name,
       p.oid::regprocedure::text AS function_name
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
WHERE t.tgname IN ('pgshift_capture', 'pgshift_no_truncate')
ORDER BY 1, 2, 3;

-- name: CaptureInstalled :one
-- Whether any table of the database has pgshift's capture trigger.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = 'pgshift_capture') AS installed;
