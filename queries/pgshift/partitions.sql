-- name: Partitions :many
-- Every partition of a table, at every level (none for a table that is not
-- partitioned): each gets pgshift's TRUNCATE trigger, which PostgreSQL does
-- not clone from the partitioned table.
SELECT n.nspname::text AS table_schema, c.relname::text AS table_name
FROM pg_catalog.pg_partition_tree(pg_catalog.to_regclass(@table_ident::text)) AS pt
JOIN pg_catalog.pg_class AS c ON c.oid = pt.relid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE pt.level > 0
ORDER BY 1, 2;

-- name: PartitionsWithoutTruncateTrigger :many
-- The partitions of captured tables that lack pgshift's TRUNCATE trigger
-- (attached after pgshift install --capture): a TRUNCATE of one of them
-- would empty it on one side only.
SELECT DISTINCT n.nspname::text AS table_schema, c.relname::text AS table_name,
       rn.nspname::text AS parent_schema, r.relname::text AS parent_name
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_class AS r ON r.oid = t.tgrelid AND r.relkind = 'p'
JOIN pg_catalog.pg_namespace AS rn ON rn.oid = r.relnamespace
CROSS JOIN LATERAL pg_catalog.pg_partition_tree(r.oid) AS pt
JOIN pg_catalog.pg_class AS c ON c.oid = pt.relid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE t.tgname = 'pgshift_capture' AND pt.level > 0
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS x WHERE x.tgrelid = c.oid AND x.tgname = 'pgshift_no_truncate')
ORDER BY 1, 2;
