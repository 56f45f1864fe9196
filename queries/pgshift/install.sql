-- name: Installed :one
-- Whether pgshift's schema is installed on this database, as this version
-- of pgshift installs it (its newest table is there).
SELECT (pg_catalog.to_regclass('pgshift.repair_log') IS NOT NULL AND pg_catalog.to_regclass('pgshift.changed_rows') IS NOT NULL)::boolean AS installed;
