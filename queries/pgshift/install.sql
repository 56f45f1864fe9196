-- name: Installed :one
-- Whether pgshift's schema is installed on this database.
SELECT (to_regclass('pgshift.repair_log') IS NOT NULL)::boolean AS installed;
