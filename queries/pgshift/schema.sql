-- pgshift's own tables. They live in their own schema on both databases so
-- that they never mix with the application's tables: the operator tools leave
-- the schema "pgshift" out of everything they compare or copy.

CREATE SCHEMA IF NOT EXISTS pgshift;

-- repair_log holds, on the side that committed a write, the rows that write
-- touched until the other side is known to hold the same. An entry on side X
-- means "copy the current row from X to the other side". Entries are written
-- in the same transaction as the write they describe, so a committed write
-- always has either a confirmed copy on the other side or an entry here.
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
    last_error      text        NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS repair_log_next_attempt_at_idx
    ON pgshift.repair_log (next_attempt_at, id);

-- row_lock_id is the advisory-lock key of one row. A write takes it (in the
-- authoritative transaction, when it logs the row) before the other side is
-- written, and the repair worker takes it before it copies the row, so a
-- repair never interleaves with a write of the same row.
CREATE OR REPLACE FUNCTION pgshift.row_lock_id(table_schema text, table_name text, key text[])
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN hashtextextended(table_schema || '.' || table_name || E'\x1f' || array_to_string(key, E'\x1f'), 0);

-- backfill_progress records the chunks `pgshift backfill` has finished, on the
-- new database, so that an interrupted backfill resumes where it stopped.
CREATE TABLE IF NOT EXISTS pgshift.backfill_progress (
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    chunk        integer     NOT NULL,
    -- the last primary key of the chunk, in text form
    last_key     text[]      NOT NULL,
    rows_copied  bigint      NOT NULL,
    done_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, table_name, chunk)
);
