-- name: Installed :one
-- Whether pgshift's schema is installed on this database, as this version
-- of pgshift installs it (its newest table is there).
SELECT (pg_catalog.to_regclass('pgshift.repair_log') IS NOT NULL AND pg_catalog.to_regclass('pgshift.changed_rows') IS NOT NULL
        AND pg_catalog.to_regclass('pgshift.key_authority') IS NOT NULL
        AND pg_catalog.to_regprocedure('pgshift.fence_old(text)') IS NOT NULL
        AND pg_catalog.to_regclass('pgshift.repair_log_key_hash_idx') IS NOT NULL)::boolean AS installed;

-- name: WritePrivileges :one
-- Whether the current role may do what every dual write does on this
-- database: record its rows in the repair log, confirm them (delete), and,
-- on new, draw its rows' order from pgshift.row_order. Without USAGE on the
-- sequence a write could not take its rows' locks on new and would go on
-- unordered.
SELECT pg_catalog.has_table_privilege('pgshift.repair_log', 'INSERT, DELETE, SELECT')::boolean AS log,
       pg_catalog.has_sequence_privilege('pgshift.row_order', 'USAGE')::boolean AS row_order;

-- name: ForeignObjects :many
-- Schema pgshift and the objects in it that another role may have put there
-- for pgshift to adopt: those owned by a role that is neither the current
-- role, nor one it is a member of (directly or through other roles), nor
-- the database's owner, nor a superuser; and any trigger on pgshift's tables
-- (pgshift creates none).
-- Install and the facade's start refuse to go on while there are any: a
-- table or function another role owns runs that role's code in pgshift's
-- writes, with the writer's privileges. Everything is named from
-- pg_catalog, as this runs with the caller's search_path.
WITH RECURSIVE mine AS (
    SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname OPERATOR(pg_catalog.=) current_user
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members AS m JOIN mine ON m.member OPERATOR(pg_catalog.=) mine.oid
), trusted AS (
    SELECT oid FROM mine
    UNION
    SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolsuper
    UNION
    SELECT d.datdba FROM pg_catalog.pg_database AS d WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
), ns AS (
    SELECT n.oid, n.nspowner FROM pg_catalog.pg_namespace AS n WHERE n.nspname OPERATOR(pg_catalog.=) 'pgshift'
), objects AS (
    SELECT 'schema'::text AS kind, 'pgshift'::text AS name, ns.nspowner AS owner FROM ns
    UNION ALL
    SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence'
                          WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' ELSE 'relation' END,
           c.oid::regclass::text, c.relowner
    FROM pg_catalog.pg_class AS c JOIN ns ON c.relnamespace OPERATOR(pg_catalog.=) ns.oid
    UNION ALL
    SELECT 'function', p.oid::regprocedure::text, p.proowner
    FROM pg_catalog.pg_proc AS p JOIN ns ON p.pronamespace OPERATOR(pg_catalog.=) ns.oid
    UNION ALL
    SELECT 'type', t.oid::regtype::text, t.typowner
    FROM pg_catalog.pg_type AS t JOIN ns ON t.typnamespace OPERATOR(pg_catalog.=) ns.oid
    WHERE t.typrelid OPERATOR(pg_catalog.=) 0
    UNION ALL
    SELECT 'operator', o.oid::regoperator::text, o.oprowner
    FROM pg_catalog.pg_operator AS o JOIN ns ON o.oprnamespace OPERATOR(pg_catalog.=) ns.oid
)
SELECT o.kind::text AS kind, o.name::text AS name, pg_catalog.pg_get_userbyid(o.owner)::text AS owner
FROM objects AS o
WHERE o.owner NOT IN (SELECT oid FROM trusted)
UNION ALL
SELECT 'trigger', pg_catalog.quote_ident(tg.tgname::text) OPERATOR(pg_catalog.||) ' on ' OPERATOR(pg_catalog.||) c.oid::regclass::text,
       pg_catalog.pg_get_userbyid(p.proowner)::text
FROM pg_catalog.pg_trigger AS tg
JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) tg.tgrelid
JOIN ns ON c.relnamespace OPERATOR(pg_catalog.=) ns.oid
JOIN pg_catalog.pg_proc AS p ON p.oid OPERATOR(pg_catalog.=) tg.tgfoid
WHERE NOT tg.tgisinternal
ORDER BY 1, 2;

-- name: DurabilitySettings :one
-- The settings a commit's durability rests on: with fsync or
-- synchronous_commit off, a crash can lose commits the facade has settled.
SELECT pg_catalog.current_setting('fsync')::text AS fsync,
       pg_catalog.current_setting('synchronous_commit')::text AS synchronous_commit;
