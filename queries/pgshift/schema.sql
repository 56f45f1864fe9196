-- pgshift's own tables. They live in their own schema on both databases so
-- that they never mix with the application's tables: the operator tools leave
-- the schema "pgshift" out of everything they compare or copy.

CREATE SCHEMA IF NOT EXISTS pgshift;

-- repair_log holds the rows whose two copies may differ, until the repair
-- worker has made them equal. An entry is written in the same transaction as
-- the write it describes, so a write that committed on one side always has
-- either a confirmed copy on the other side or an entry here:
--
--   - pull = false, on the side that is authoritative for the write: that side
--     committed and the other side did not; copy the row from here to the
--     other side. The facade writes it when the other side failed (or, where
--     both sides commit at once, always, deleted once both did).
--   - pull = true, on the other side: this side committed first and the
--     authoritative side may not have (it failed, or its answer was lost);
--     copy the row from the other side into this one. Deleted once the
--     authoritative side confirms its commit.
--
-- k_order orders the entries of one row across both sides: twice a value of
-- the sequence pgshift.row_order on new (the canonical side, where every
-- dual write and the repair worker take a row's advisory lock before they
-- change it), drawn while the write held the row's lock. Two writes of a row
-- hold its lock one after the other, so the later write always has the
-- greater value, whichever side it wrote first and whatever the two servers'
-- clocks say. A write that could not lock (new did not answer) records the
-- odd number just above the greatest order its process had seen: after every
-- write that process knew of, before every one that locks later. NULL in
-- entries that no write made (verify --repair's): they order before every
-- other.
CREATE TABLE IF NOT EXISTS pgshift.repair_log (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_schema    text        NOT NULL,
    table_name      text        NOT NULL,
    -- primary key values in text form, in the key's column order
    key             text[]      NOT NULL,
    op              text        NOT NULL,
    routing_key     text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text        NOT NULL DEFAULT '',
    pull            boolean     NOT NULL DEFAULT false,
    k_order         bigint
);

-- Installs of an earlier pgshift lack the last columns. Their k_xid column
-- (the id of the transaction that took the write's first lock, which is not
-- the row's lock order) is no longer read: such entries order as NULL.
ALTER TABLE pgshift.repair_log ADD COLUMN IF NOT EXISTS pull boolean NOT NULL DEFAULT false;
ALTER TABLE pgshift.repair_log ADD COLUMN IF NOT EXISTS k_order bigint;

-- row_order numbers row locks on new (k_order above).
CREATE SEQUENCE IF NOT EXISTS pgshift.row_order AS bigint;

CREATE INDEX IF NOT EXISTS repair_log_next_attempt_at_idx
    ON pgshift.repair_log (next_attempt_at, id);

-- The entries of one row, which the repair worker looks up on both sides
-- before it copies, by a hash of the key and then the key: an index on the
-- text[] key alone compared arrays element by element at every step of
-- every descent (lookups and each entry's insert); with the hash first,
-- the steps compare bigints and the key only where two hashes are equal.
-- The key stays in the index so that the planner, before the log has
-- statistics, still expects one entry per lookup.
DROP INDEX IF EXISTS pgshift.repair_log_row_idx;
CREATE INDEX IF NOT EXISTS repair_log_key_hash_idx
    ON pgshift.repair_log (table_schema, table_name, pg_catalog.hash_array_extended(key, 0), key);
DROP INDEX IF EXISTS pgshift.repair_log_key_idx;

-- The entries of one routing key, which the facade repairs before a new
-- authority serves the key (after a stage change).
CREATE INDEX IF NOT EXISTS repair_log_routing_key_idx
    ON pgshift.repair_log (routing_key) WHERE routing_key <> '';

-- The log is a queue: an outage fills it by the million and a drain empties
-- it. Autovacuum's defaults wait for a fifth of the table to change; these
-- vacuum and analyze it every few thousand entries instead, so the planner
-- knows its size from the first pass of a drain and the table shrinks back
-- once drained.
ALTER TABLE pgshift.repair_log SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000
);

-- backfill_chunks are the key ranges a table's backfill is split into, on the
-- new database. The first `pgshift backfill` to reach a table plans them; any
-- number of processes, on any machines, then lease them (FOR UPDATE SKIP
-- LOCKED, with an expiry) and copy them. A chunk is copied in pieces, each
-- committed with its progress (copied_upto) in one transaction on new, so a
-- worker that dies loses nothing: when its lease expires another worker goes
-- on from copied_upto.
CREATE TABLE IF NOT EXISTS pgshift.backfill_chunks (
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    chunk        integer     NOT NULL,
    -- the keys of the chunk, in text form: after after_key (NULL: from the
    -- table's start) up to and including upto_key (NULL: to its end)
    after_key    text[],
    upto_key     text[],
    -- the last key copied so far (NULL: none yet)
    copied_upto  text[],
    rows_copied  bigint      NOT NULL DEFAULT 0,
    leased_by    text,
    lease_until  timestamptz,
    done_at      timestamptz,
    PRIMARY KEY (table_schema, table_name, chunk)
);

-- Capture (pgshift install --capture) puts a trigger on each application
-- table that, in a transaction the dualwrite facade has marked (the
-- transaction-local setting pgshift.capture), appends the key of every row
-- the statement changed to the transaction-local setting pgshift.captured:
-- one JSON array [schema, table, [key text...]] per line. The facade takes
-- them (take_captured) before it commits and treats them as touched rows.
-- Each table's trigger function is generated for its key columns; these are
-- the parts they share.
--
-- Every function pgshift creates pins its search_path (SET search_path =
-- pg_catalog, pg_temp): triggers run in the writes of the application's
-- role, which may be a superuser, and a search path with a schema other
-- roles may create objects in (public, before PostgreSQL 15) would let any
-- of them plant an operator or function that runs with those privileges.

-- take_captured returns the rows captured so far in this transaction and
-- forgets them.
CREATE OR REPLACE FUNCTION pgshift.take_captured() RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    captured text := coalesce(pg_catalog.current_setting('pgshift.captured', true), '');
BEGIN
    PERFORM pg_catalog.set_config('pgshift.captured', '', true);
    RETURN captured;
END
$$;

-- refuse_truncate is the TRUNCATE trigger of a captured table: TRUNCATE
-- fires no row triggers, so capture cannot see what it removes, and it would
-- empty one side only.
CREATE OR REPLACE FUNCTION pgshift.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(pg_catalog.current_setting('pgshift.allow_truncate', true), '') OPERATOR(pg_catalog.=) 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pgshift: TRUNCATE of %.% is refused while pgshift captures its writes', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING DETAIL = 'A migration between two databases is under way: TRUNCATE would empty this side only, and no repair could follow it.',
              HINT = 'Truncate both databases deliberately, each after SET LOCAL pgshift.allow_truncate = on, or remove capture first (pgshift uninstall).';
END
$$;

-- verify_runs records, on new, what each verify found per table, so that
-- the cutover gates (pgshift preflight) can tell whether the sides were
-- proven equal, and when. equal means no difference was found. A verify
-- --repair enters its differences in the repair log and records them in
-- repaired, not equal: the verify after the drain proves the table equal.
CREATE TABLE IF NOT EXISTS pgshift.verify_runs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    rows_checked bigint      NOT NULL,
    differences  bigint      NOT NULL,
    repaired     bigint      NOT NULL,
    equal        boolean     NOT NULL
);

CREATE INDEX IF NOT EXISTS verify_runs_table_idx
    ON pgshift.verify_runs (table_schema, table_name, finished_at);

-- kind is 'full' (every row compared) or 'changed' (only the rows written
-- since the table's last full verify, pgshift verify --changed). Installs of
-- an earlier pgshift lack it; their runs were all full.
ALTER TABLE pgshift.verify_runs ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'full';

-- changed_rows is the dual-write history, on each side: the rows whose
-- repair-log entries were settled (confirmed by the other side, or
-- repaired), with when. Together with the entries still in repair_log it
-- names every row a dual write changed, so verify --changed compares only
-- those. A full verify of a table forgets the rows changed before it began.
-- changed_at is refreshed at most every ten seconds per row, so hot rows
-- do not rewrite it on every write.
CREATE TABLE IF NOT EXISTS pgshift.changed_rows (
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    key          text[]      NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name, key)
);

-- shadow_reads counts, on new, the shadow reads the facades made and how
-- many of them disagreed, per minute and operation, written in batches:
-- the cutover gate into live reads the last window of it.
CREATE TABLE IF NOT EXISTS pgshift.shadow_reads (
    minute     timestamptz NOT NULL,
    op         text        NOT NULL,
    reads      bigint      NOT NULL,
    mismatches bigint      NOT NULL,
    PRIMARY KEY (minute, op)
);

-- shadow_reads_by_user counts the same reads per user: the routing key and
-- the attributes the flag rules target (dualwrite's ctx, flags.WithUser),
-- per minute. The gates of a move count the reads and mismatches of the
-- users it moves only (pgshift finds them by evaluating the flag file before
-- and after the move for each user here): one cohort's clean reads say
-- nothing about another's. A facade records at most 10,000 users per flush
-- (every 10 s); the reads of users beyond are in shadow_reads only. The
-- facades delete rows older than a day.
CREATE TABLE IF NOT EXISTS pgshift.shadow_reads_by_user (
    minute      timestamptz NOT NULL,
    routing_key text        NOT NULL,
    attributes  jsonb       NOT NULL,
    reads       bigint      NOT NULL,
    mismatches  bigint      NOT NULL,
    PRIMARY KEY (minute, routing_key, attributes)
);

-- facades are the processes running a dualwrite facade, as each last
-- reported itself: every 10 s, on each side it can reach, with the state of
-- its breakers, which live in the application's processes. `pgshift status`
-- shows the ones seen in the last minute. A facade deletes its row when it
-- closes; rows of processes that died stop being refreshed.
CREATE TABLE IF NOT EXISTS pgshift.facades (
    instance    text        PRIMARY KEY,
    host        text        NOT NULL,
    pid         integer     NOT NULL,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    breaker_old text        NOT NULL,
    breaker_new text        NOT NULL,
    skipped_old bigint      NOT NULL DEFAULT 0,
    skipped_new bigint      NOT NULL DEFAULT 0
);

-- key_authority records, on new, the side each routing key is served from
-- as its authority (old or new), and fences it: every dual write of a
-- routing key takes a shared lock on the key's authority on new, in its first
-- round trip there, and fails (SQLSTATE PGSF1, nothing committed) unless the
-- side its stage makes authoritative is the one recorded, settled (fence).
-- A facade that serves the key under the other authority first takes the
-- lock alone, which waits for every write of the key in flight in any
-- process, records the new side unsettled (every write of the key is then
-- refused) and commits; it catches the key up (its repair-log entries) and
-- then records the side settled. So two processes that see a stage change
-- at different moments never have writes of one routing key acknowledged
-- under both authorities, nor under the new one before the key's pending
-- writes reached it.
-- On old the same table holds one mark per routing key, written under the
-- key's authority on new: side 'new' before new may serve the key, side
-- 'old' once old caught it up from new's log. While new is out of reach old
-- serves the keys marked 'old' (or not at all) and refuses the others:
-- new's log may hold acknowledged writes of theirs.
CREATE TABLE IF NOT EXISTS pgshift.key_authority (
    routing_key text        PRIMARY KEY,
    side        text        NOT NULL CHECK (side IN ('old', 'new')),
    settled     boolean     NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

-- fence takes the shared lock on routing_key's authority for the rest of
-- the transaction and fails unless side is the one key_authority records,
-- settled.
-- Volatile plpgsql: the record is read with a snapshot taken after the lock
-- is held, so a change committed while the lock was waited for is seen.
CREATE OR REPLACE FUNCTION pgshift.fence(routing_key text, side text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    recorded text;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(1885827944, pg_catalog.hashtext(fence.routing_key));
    SELECT CASE WHEN a.settled THEN a.side ELSE 'a move to ' OPERATOR(pg_catalog.||) a.side END INTO recorded
    FROM pgshift.key_authority AS a
    WHERE a.routing_key OPERATOR(pg_catalog.=) fence.routing_key;
    IF recorded IS DISTINCT FROM fence.side THEN
        RAISE EXCEPTION 'pgshift: routing key % is served from % as its authority, not from %', fence.routing_key, coalesce(recorded, 'no side yet'), fence.side
            USING ERRCODE = 'PGSF1',
                  HINT = 'Another process sees another stage for this key, or the key was not caught up yet: the facade catches it up and runs the write again.';
    END IF;
END
$$;

-- fence_old is, on old, the fence of every write under old's authority
-- (new's fence does not outlive the write's transaction on new, which ends
-- when the caller stops waiting, while old may still run a COMMIT it was
-- sent): a shared lock on routing_key's mark, for the rest of the
-- transaction, and a check that the mark (see key_authority) does not say
-- that new may serve the key. A mark written while the lock is held waits
-- for the write's COMMIT, so the catch-up that wrote it reads the write's
-- entries.
CREATE OR REPLACE FUNCTION pgshift.fence_old(routing_key text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    recorded text;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(1885827944, pg_catalog.hashtext(fence_old.routing_key));
    SELECT a.side INTO recorded
    FROM pgshift.key_authority AS a
    WHERE a.routing_key OPERATOR(pg_catalog.=) fence_old.routing_key;
    IF recorded OPERATOR(pg_catalog.=) 'new' THEN
        RAISE EXCEPTION 'pgshift: routing key % may be served from new, which did not answer: old does not serve it alone', fence_old.routing_key
            USING ERRCODE = 'PGSF1',
                  HINT = 'Another process moved the key to new since this one caught it up: the facade catches it up and runs the write again.';
    END IF;
END
$$;

-- ---------------------------------------------------------------------
-- Cutover: moves of cohorts (pgshift move, internal/cutover).
-- ---------------------------------------------------------------------

-- moves records, on new, every move pgshift move made in a flag file,
-- backward ones (rollbacks) and undos too, with the stages the file could
-- give a user before and after it. A stage that writes one side only in
-- stages_before or stages_after means some cohort wrote one side only
-- then: 'off' leaves new missing its writes. The gates into shadow, live
-- and complete want a full verify that started after the last such period.
CREATE TABLE IF NOT EXISTS pgshift.moves (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    moved_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    flag_file     text        NOT NULL,
    cohort        text        NOT NULL,
    from_stage    text        NOT NULL,
    to_stage      text        NOT NULL,
    forced        boolean     NOT NULL,
    undo          boolean     NOT NULL,
    stages_before text[]      NOT NULL,
    stages_after  text[]      NOT NULL
);

CREATE INDEX IF NOT EXISTS moves_moved_at_idx ON pgshift.moves (moved_at);
