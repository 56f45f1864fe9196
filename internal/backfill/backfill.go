// Package backfill copies the rows of tables from the old database to the
// new one while the application keeps writing both.
//
// # Guarantees
//
//   - A row new already has is never overwritten: rows written to new by the
//     dual-writing facade are newer than anything backfill read from old. A
//     chunk whose key range is empty on new is streamed with COPY straight
//     into the table (a concurrent insert of the same key makes the COPY
//     fail, never overwrite, and the chunk is retried the other way); any
//     other chunk goes through a temporary table and INSERT ... ON CONFLICT
//     DO NOTHING.
//   - Resumable: each chunk commits on new in one transaction together with
//     its row in pgshift.backfill_progress, so a backfill killed at any
//     instant resumes after the last committed chunk and copies no chunk
//     twice. A finished table is marked done (last_key = '{}') and skipped
//     by later runs unless Options.Restart is set.
//   - Keyset chunks (rowsync.NextChunk), never OFFSET; COPY in text format,
//     so enums and arrays of them survive different type OIDs on the two
//     servers. Options.Workers tables are copied at once.
//
// # The delete race
//
// A dual write that deletes (or updates through a plain UPDATE) a row on
// old and then on new while backfill holds that row's old version in flight
// can let backfill insert the old version on new after the dual write
// touched nothing there: the row is resurrected (or stale) on new. The
// window is one chunk's copy. Backfill does not close it: run
// `pgshift verify --repair` after backfill (verify re-checks differences, so
// it reports only lasting ones), or backfill before dual writes start.
// Inserts and upserts through the facade are safe.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/queries"
)

// Options tune a backfill. The zero value works.
type Options struct {
	// Workers is how many tables are copied at once (default 1).
	Workers int
	// ChunkSize is the number of rows per chunk (default 10,000).
	ChunkSize int
	// Restart forgets earlier progress of the tables and copies them again
	// (rows new has are still never overwritten).
	Restart bool
	// Progress, when set, is called after every committed chunk, from the
	// worker that copied it.
	Progress func(Progress)
	// Logger receives one line per table (default slog.Default()).
	Logger *slog.Logger
}

// Progress is reported after each chunk.
type Progress struct {
	Table *rowsync.Table
	// Chunk is the chunk's number; Range its keys.
	Chunk int
	Range rowsync.Range
	// Rows is the number of rows read from old in this chunk, Inserted the
	// number of them new did not already have.
	Rows, Inserted int64
	// Estimate is the table's row count as old's statistics estimate it.
	Estimate int64
	// Done is set on the table's last chunk.
	Done bool
}

// Result is what a backfill did to one table.
type Result struct {
	Table *rowsync.Table
	// Chunks, Rows and Inserted count this run's chunks, rows read from
	// old and rows inserted into new (the rest new already had).
	Chunks         int
	Rows, Inserted int64
	// AlreadyDone is set when an earlier run had finished the table.
	AlreadyDone bool
	// Resumed is set when an earlier run had copied part of the table.
	Resumed bool
	Err     error
}

// Run copies tables from old to new. Per-table failures are in the results
// (the other tables continue); the error is for what stops everything.
func Run(ctx context.Context, old, new *pgxpool.Pool, tables []*rowsync.Table, opts Options) ([]Result, error) {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.ChunkSize < 1 {
		opts.ChunkSize = 10_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if _, err := new.Exec(ctx, queries.PgshiftSchema); err != nil {
		return nil, fmt.Errorf("backfill: create pgshift's schema on new: %w", err)
	}
	results := make([]Result, len(tables))
	rowsync.ForEach(ctx, len(tables), opts.Workers, func(i int) {
		results[i] = table(ctx, old, new, tables[i], opts)
	})
	return results, ctx.Err()
}

func table(ctx context.Context, old, new *pgxpool.Pool, t *rowsync.Table, opts Options) Result {
	res := Result{Table: t}
	log := opts.Logger.With("op", "backfill", "table", t.String())
	start := time.Now()
	if opts.Restart {
		if _, err := new.Exec(ctx, `DELETE FROM pgshift.backfill_progress WHERE table_schema = $1 AND table_name = $2`, t.Schema, t.Name); err != nil {
			res.Err = fmt.Errorf("backfill %s: forget progress: %w", t, err)
			return res
		}
	}
	chunk, after, err := resumePoint(ctx, new, t)
	if err != nil {
		res.Err = err
		return res
	}
	if chunk > 0 && after == nil {
		res.AlreadyDone = true
		log.Info("table already backfilled")
		return res
	}
	res.Resumed = chunk > 0
	estimate, err := estimateRows(ctx, old, t)
	if err != nil {
		res.Err = err
		return res
	}
	for {
		chunk++
		r, _, err := rowsync.NextChunk(ctx, old, t, after, opts.ChunkSize, false)
		if err != nil {
			res.Err = fmt.Errorf("backfill: %w", err)
			return res
		}
		rows, inserted, err := copyChunk(ctx, old, new, t, chunk, r)
		if err != nil {
			res.Err = err
			return res
		}
		res.Chunks++
		res.Rows += rows
		res.Inserted += inserted
		if opts.Progress != nil {
			opts.Progress(Progress{Table: t, Chunk: chunk, Range: r, Rows: rows, Inserted: inserted, Estimate: estimate, Done: r.Last == nil})
		}
		if r.Last == nil {
			log.Info("table backfilled", "chunks", res.Chunks, "rows", res.Rows, "inserted", res.Inserted, "resumed", res.Resumed, "seconds", time.Since(start).Seconds())
			return res
		}
		after = r.Last
	}
}

// resumePoint is the number of the last chunk an earlier run committed and
// its last key (nil with chunk > 0: the table is done).
func resumePoint(ctx context.Context, new *pgxpool.Pool, t *rowsync.Table) (chunk int, after []string, err error) {
	err = new.QueryRow(ctx, `SELECT chunk, last_key FROM pgshift.backfill_progress
		WHERE table_schema = $1 AND table_name = $2 ORDER BY chunk DESC LIMIT 1`, t.Schema, t.Name).Scan(&chunk, &after)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("backfill %s: read progress: %w", t, err)
	}
	if len(after) == 0 {
		after = nil
	}
	return chunk, after, nil
}

func estimateRows(ctx context.Context, old *pgxpool.Pool, t *rowsync.Table) (int64, error) {
	var n int64
	err := old.QueryRow(ctx, `SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass`, t.Ident()).Scan(&n)
	if err == nil && n == 0 {
		err = old.QueryRow(ctx, `SELECT count(*) FROM `+t.Ident()).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("backfill %s: estimate rows: %w", t, err)
	}
	return n, nil
}

// copyChunk copies the rows of r from old to new and records the chunk, in
// one transaction on new.
func copyChunk(ctx context.Context, old, new *pgxpool.Pool, t *rowsync.Table, chunk int, r rowsync.Range) (rows, inserted int64, err error) {
	direct := true
	for {
		rows, inserted, err = copyChunkOnce(ctx, old, new, t, chunk, r, direct)
		var pgErr *pgconn.PgError
		if direct && errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation: a dual write got there first
			direct = false
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("backfill %s: chunk %d %v: %w", t, chunk, r, err)
		}
		return rows, inserted, nil
	}
}

func copyChunkOnce(ctx context.Context, old, new *pgxpool.Pool, t *rowsync.Table, chunk int, r rowsync.Range, direct bool) (rows, inserted int64, err error) {
	tx, err := new.Begin(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if direct {
		cond, args := t.RangeCond("t", r, func(i int) string { return fmt.Sprintf("$%d", i+1) })
		if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s AS t WHERE %s)", t.Ident(), cond), args...).Scan(&direct); err != nil {
			return 0, 0, err
		}
		direct = !direct
	}
	cols := t.ColumnList()
	target := t.Ident()
	if !direct {
		target = "pg_temp.pgshift_backfill_chunk"
		if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE pgshift_backfill_chunk ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA", cols, t.Ident())); err != nil {
			return 0, 0, err
		}
	}
	if rows, err = pipe(ctx, old, tx.Conn().PgConn(), t, r, fmt.Sprintf("COPY %s (%s) FROM STDIN", target, cols)); err != nil {
		return 0, 0, err
	}
	inserted = rows
	if !direct {
		tag, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s ON CONFLICT DO NOTHING", t.Ident(), cols, cols, target))
		if err != nil {
			return 0, 0, err
		}
		inserted = tag.RowsAffected()
	}
	last := r.Last
	if last == nil {
		last = []string{}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO pgshift.backfill_progress (table_schema, table_name, chunk, last_key, rows_copied)
		VALUES ($1, $2, $3, $4, $5)`, t.Schema, t.Name, chunk, last, rows); err != nil {
		return 0, 0, fmt.Errorf("record progress: %w", err)
	}
	return rows, inserted, tx.Commit(ctx)
}

// pipe streams the rows of r from old (COPY TO STDOUT) into dst's copyIn
// statement and returns how many rows old sent.
func pipe(ctx context.Context, old *pgxpool.Pool, dst *pgconn.PgConn, t *rowsync.Table, r rowsync.Range, copyIn string) (int64, error) {
	tx, err := old.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// COPY takes no parameters: the range's keys travel as transaction-local
	// settings that the query reads with current_setting, so no value is
	// ever formatted into SQL.
	cond, args := t.RangeCond("t", r, func(i int) string { return fmt.Sprintf("current_setting('pgshift.key%d')", i) })
	if len(args) > 0 {
		sets := make([]string, len(args))
		for i := range args {
			sets[i] = fmt.Sprintf("set_config('pgshift.key%d', $%d, true)", i, i+1)
		}
		if _, err := tx.Exec(ctx, "SELECT "+strings.Join(sets, ", "), args...); err != nil {
			return 0, err
		}
	}
	query := fmt.Sprintf("COPY (SELECT %s FROM %s AS t WHERE %s ORDER BY %s) TO STDOUT", t.ColumnList(), t.Ident(), cond, t.KeyList())
	pr, pw := io.Pipe()
	var sent int64
	var sendErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		var tag pgconn.CommandTag
		tag, sendErr = tx.Conn().PgConn().CopyTo(ctx, pw, query)
		sent = tag.RowsAffected()
		pw.CloseWithError(sendErr)
	}()
	_, recvErr := dst.CopyFrom(ctx, pr, copyIn)
	pr.CloseWithError(errors.New("copy into new ended"))
	<-done
	if recvErr != nil {
		return 0, recvErr
	}
	if sendErr != nil {
		return 0, sendErr
	}
	return sent, tx.Commit(ctx)
}
