// Package backfill copies the rows of tables from the old database to the
// new one while the application keeps writing both.
//
// # Guarantees
//
//   - A row new already has is never overwritten: rows written to new by the
//     dual-writing facade are newer than anything backfill read from old.
//     Every chunk is written with INSERT semantics only, never UPDATE (see
//     How a chunk is copied).
//   - Resumable: each chunk commits on new in one transaction together with
//     its row in pgshift.backfill_progress, so a backfill killed at any
//     instant resumes after the last committed chunk and copies no chunk
//     twice. A finished table is marked done (last_key = '{}') and skipped
//     by later runs unless Options.Restart is set.
//   - Keyset chunks (key > last key copied, ORDER BY key LIMIT size), never
//     OFFSET; COPY in text format, so enums and arrays of them survive
//     different type OIDs on the two servers. Options.Workers tables are
//     copied at once.
//
// # How a chunk is copied
//
// Old streams the chunk with COPY (SELECT ... ORDER BY key LIMIT size) TO
// STDOUT straight into COPY ... FROM STDIN on new, 64 KiB per message; no
// row is decoded in Go. The chunk's end is the key of the last row that
// went through (parsed from the stream), so old is read once per chunk: no
// separate walk over the key index.
//
// Direct: new's first key after the chunk's start is looked up (one index
// probe) and the COPY from old stops before it, so the chunk's key range
// is empty on new when the COPY starts and the rows go straight into the
// table. When new holds no row after the start (a fresh backfill, or dual
// writes only at the end of the key space) chunks are full size.
//
// Safe: when new's next row follows the start (or the direct COPY failed),
// the chunk goes into a temporary table and then INSERT ... ON CONFLICT DO
// NOTHING. Once a safe chunk finds none of its rows on new, the next
// chunk is tried directly again.
//
// The race with a concurrent dual write. The direct COPY runs in one
// transaction and is all or nothing. A dual write that inserts a key of
// the chunk on new before the COPY reaches it makes the COPY fail with a
// unique violation (waiting for the writer to commit if it has not); the
// whole chunk rolls back and is copied the safe way, which skips that row.
// A dual insert that comes after the COPY inserted the key waits for the
// backfill transaction and then fails on the unique key (a plain INSERT:
// the facade counts new's failure, keeps the repair log entry, and the
// repair worker copies the current authoritative row over backfill's) or
// updates it (an upsert: the newer values win). A dual UPDATE or DELETE
// that finds no row on new (backfill has not reached it, or has not
// committed) is treated by the facade as diverged and repaired the same
// way. So a dual-written row is never replaced by backfill's older copy;
// deletes are the one case left, closed as below.
//
// # The delete race
//
// A dual write that deletes a row on old and then on new while backfill
// holds that row's old version in flight finds nothing to delete on new;
// backfill would then insert the old version after it: a resurrected row.
// Backfill closes this: inside each chunk's transaction it notes the keys
// it inserted (rows whose xmin is its own transaction), and once the chunk
// has committed it asks old which of them are gone and deletes those from
// new again, unless a writer has changed them since (their xmin moved on).
// A delete that commits on old after that question finds the row on new
// itself. (Updates need no such step: an UPDATE that finds no row on new is
// repaired by copying old's current row, and backfill never overwrites.)
package backfill

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// Options tune a backfill. The zero value works.
type Options struct {
	// Workers is how many tables are copied at once (default 1).
	Workers int
	// ChunkSize is the number of rows per chunk (default 50,000: fewer
	// chunks mean fewer pauses between one COPY and the next).
	ChunkSize int
	// Restart forgets earlier progress of the tables and copies them again
	// (rows new has are still never overwritten).
	Restart bool
	// Progress, when set, is called after every committed chunk, from the
	// worker that copied it.
	Progress func(Progress)
	// Logger receives one line per table (default slog.Default()).
	Logger *slog.Logger

	// afterCopy, set by tests (WithAfterCopy), runs after a chunk's rows
	// reached new and before its transaction commits: where a concurrent
	// delete races it.
	afterCopy func(*rowsync.Table)
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

// Run copies tables from old to new, parents before children: new's foreign
// keys refuse a row whose parent has not been copied yet, so tables go level
// by level of rowsync.ForeignKeyLevels (read on new), Options.Workers tables
// of one level at once. A table's failure stops the levels after its own
// (their rows may need it); the results then hold only the tables started.
// The error is for what stops everything.
func Run(ctx context.Context, oldDB, newDB *pgxpool.Pool, tables []*rowsync.Table, opts Options) ([]Result, error) {
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.ChunkSize < 1 {
		opts.ChunkSize = 50_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := pgshiftdb.Install(ctx, newDB); err != nil {
		return nil, fmt.Errorf("backfill: on new: %w", err)
	}
	levels, err := rowsync.ForeignKeyLevels(ctx, newDB, tables)
	if err != nil {
		return nil, fmt.Errorf("backfill: on new: %w", err)
	}
	var results []Result
	for _, level := range levels {
		res := make([]Result, len(level))
		rowsync.ForEach(ctx, len(level), opts.Workers, func(i int) {
			res[i] = table(ctx, oldDB, newDB, level[i], opts)
		})
		for _, r := range res {
			if r.Table != nil {
				results = append(results, r)
			}
		}
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		for _, r := range res {
			if r.Err != nil {
				return results, nil
			}
		}
	}
	return results, nil
}

func table(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, opts Options) Result {
	res := Result{Table: t}
	log := opts.Logger.With("op", "backfill", "table", t.String())
	start := time.Now()
	if opts.Restart {
		if err := progress.ForgetBackfillProgress(ctx, newDB, pgshiftdb.ForgetBackfillProgressParams{TableSchema: t.Schema, TableName: t.Name}); err != nil {
			res.Err = fmt.Errorf("backfill %s: forget progress: %w", t, err)
			return res
		}
	}
	chunk, after, err := resumePoint(ctx, newDB, t)
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
	estimate, err := estimateRows(ctx, oldDB, t)
	if err != nil {
		res.Err = err
		return res
	}
	c := copier{old: oldDB, new: newDB, t: t, size: opts.ChunkSize, direct: true, afterCopy: opts.afterCopy}
	for {
		chunk++
		r, rows, inserted, err := c.chunk(ctx, chunk, after)
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
func resumePoint(ctx context.Context, newDB *pgxpool.Pool, t *rowsync.Table) (chunk int, after []string, err error) {
	p, err := progress.BackfillResumePoint(ctx, newDB, pgshiftdb.BackfillResumePointParams{TableSchema: t.Schema, TableName: t.Name})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("backfill %s: read progress: %w", t, err)
	}
	if len(p.LastKey) == 0 {
		return int(p.Chunk), nil, nil
	}
	return int(p.Chunk), p.LastKey, nil
}

// progress runs the statements of pgshift.backfill_progress.
var progress = pgshiftdb.New()

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

// copier copies one table's chunks from old to new.
type copier struct {
	old, new *pgxpool.Pool
	t        *rowsync.Table
	size     int
	// direct is set while chunks are tried with a direct COPY; it is
	// cleared when new turns out to hold rows where the next chunk goes and
	// set again after a chunk whose rows new held none of.
	direct bool
	// xid is the transaction of the last committed chunk, for
	// settleDeletes.
	xid string
	// afterCopy is Options.afterCopy.
	afterCopy func(*rowsync.Table)
}

// chunk copies the up to c.size rows after key after (nil: from the
// start) and records the chunk as number n, in one transaction on new. It
// returns the chunk's range: Last is the last key copied, or nil when the
// chunk ran to the table's end.
func (c *copier) chunk(ctx context.Context, n int, after []string) (r rowsync.Range, rows, inserted int64, err error) {
	if c.direct {
		r, rows, copied, err := c.copyDirect(ctx, n, after)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UniqueViolation: // a dual write got there first
			c.direct = false
		case err != nil:
			return r, 0, 0, fmt.Errorf("backfill %s: chunk %d after %v: %w", c.t, n, after, err)
		case copied:
			return r, rows, rows, c.settleDeletes(ctx, n, r, rows)
		default: // new's next row follows after: nothing to copy directly
			c.direct = false
		}
	}
	r, rows, inserted, err = c.copySafe(ctx, n, after)
	if err != nil {
		return r, 0, 0, fmt.Errorf("backfill %s: chunk %d after %v: %w", c.t, n, after, err)
	}
	c.direct = inserted == rows
	return r, rows, inserted, c.settleDeletes(ctx, n, r, inserted)
}

// noteOwn remembers, inside a chunk's transaction, its id: the rows it
// inserted into new are those with that xmin.
func (c *copier) noteOwn(ctx context.Context, tx pgx.Tx) error {
	if c.afterCopy != nil {
		c.afterCopy(c.t)
	}
	var err error
	c.xid, err = rowsync.CurrentXID(ctx, tx)
	return err
}

// settleDeletes closes the delete race: after chunk r committed, rows it
// inserted that old no longer has were deleted by a dual write while the
// chunk was in flight (the delete found nothing on new then), so they are
// deleted from new again, unless a writer changed them since. A delete that
// commits on old after this check finds the row on new itself. The common
// case costs two index scans: when both sides hold the same keys in r
// (KeyFingerprint) nothing was deleted.
func (c *copier) settleDeletes(ctx context.Context, n int, r rowsync.Range, inserted int64) error {
	if inserted == 0 {
		return nil // nothing of this chunk's can have come back
	}
	fail := func(what string, err error) error {
		return fmt.Errorf("backfill %s: chunk %d: re-check deletes: %s: %w", c.t, n, what, err)
	}
	fpOld, err := rowsync.KeyFingerprint(ctx, c.old, c.t, r)
	if err != nil {
		return fail("old", err)
	}
	fpNew, err := rowsync.KeyFingerprint(ctx, c.new, c.t, r)
	if err != nil {
		return fail("new", err)
	}
	if fpOld == fpNew {
		return nil
	}
	ours, err := rowsync.InsertedKeys(ctx, c.new, c.t, r, c.xid)
	if err != nil {
		return fail("new", err)
	}
	missing, err := rowsync.MissingKeys(ctx, c.old, c.t, ours)
	if err != nil {
		return fail("old", err)
	}
	if _, err := rowsync.DeleteInsertedKeys(ctx, c.new, c.t, missing, c.xid); err != nil {
		return fail("new", err)
	}
	return nil
}

// copyDirect COPYs old's rows after key after, up to c.size and up to new's
// first key after it, straight into the table on new. It reports whether
// it copied anything; when new's next row follows after immediately it
// copies nothing (copied is false) and the caller takes the safe way.
func (c *copier) copyDirect(ctx context.Context, n int, after []string) (r rowsync.Range, rows int64, copied bool, err error) {
	r.After = after
	tx, err := c.new.Begin(ctx)
	if err != nil {
		return r, 0, false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	before, err := rowsync.FirstKeyAfter(ctx, tx, c.t, after)
	if err != nil {
		return r, 0, false, err
	}
	rows, last, err := c.pipe(ctx, tx.Conn().PgConn(), after, before, fmt.Sprintf("COPY %s (%s) FROM STDIN", c.t.Ident(), c.t.ColumnList()))
	if err != nil {
		return r, 0, false, err
	}
	switch {
	case rows == 0 && before != nil:
		return r, 0, false, nil
	case rows == int64(c.size):
		r.Last = last
	case before != nil:
		// old has no row between last and before, and new's rows from
		// before on are dual-written: the next chunk takes the safe way.
		r.Last = last
		c.direct = false
	}
	if err := c.noteOwn(ctx, tx); err != nil {
		return r, 0, false, err
	}
	if err := record(ctx, tx, c.t, n, r, rows); err != nil {
		return r, 0, false, err
	}
	return r, rows, true, tx.Commit(ctx)
}

// copySafe COPYs old's rows after key after, up to c.size, into a
// temporary table on new and inserts those new does not have.
func (c *copier) copySafe(ctx context.Context, n int, after []string) (r rowsync.Range, rows, inserted int64, err error) {
	r.After = after
	tx, err := c.new.Begin(ctx)
	if err != nil {
		return r, 0, 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	cols := c.t.ColumnList()
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE pgshift_backfill_chunk ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA", cols, c.t.Ident())); err != nil {
		return r, 0, 0, err
	}
	rows, last, err := c.pipe(ctx, tx.Conn().PgConn(), after, nil, fmt.Sprintf("COPY pg_temp.pgshift_backfill_chunk (%s) FROM STDIN", cols))
	if err != nil {
		return r, 0, 0, err
	}
	if rows == int64(c.size) {
		r.Last = last
	}
	tag, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM pg_temp.pgshift_backfill_chunk ON CONFLICT DO NOTHING", c.t.Ident(), cols, cols))
	if err != nil {
		return r, 0, 0, err
	}
	if err := c.noteOwn(ctx, tx); err != nil {
		return r, 0, 0, err
	}
	if err := record(ctx, tx, c.t, n, r, rows); err != nil {
		return r, 0, 0, err
	}
	return r, rows, tag.RowsAffected(), tx.Commit(ctx)
}

// record writes chunk n's row in pgshift.backfill_progress.
func record(ctx context.Context, tx pgx.Tx, t *rowsync.Table, n int, r rowsync.Range, rows int64) error {
	last := r.Last
	if last == nil {
		last = []string{}
	}
	if err := progress.RecordBackfillChunk(ctx, tx, pgshiftdb.RecordBackfillChunkParams{
		TableSchema: t.Schema, TableName: t.Name, Chunk: int32(n), LastKey: last, RowsCopied: rows,
	}); err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	return nil
}

// pipe streams old's rows with keys after after and (unless nil) before
// before, in key order, at most c.size of them (COPY TO STDOUT), into
// dst's copyIn statement. It returns how many rows old sent and the key of
// the last one.
func (c *copier) pipe(ctx context.Context, dst *pgconn.PgConn, after, before []string, copyIn string) (int64, []string, error) {
	tx, err := c.old.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// COPY takes no parameters: the limit and keys travel as transaction-local
	// settings that the query reads with current_setting, so no value is
	// ever formatted into SQL.
	setting := func(i int) string { return fmt.Sprintf("current_setting('pgshift.key%d')", i) }
	cond, args := c.t.RangeCond("t", rowsync.Range{After: after}, setting)
	if before != nil {
		cond2, args2 := c.t.KeyCond("t", "<", before, func(i int) string { return setting(len(args) + i) })
		cond, args = cond+" AND "+cond2, append(args, args2...)
	}
	sets := []string{"set_config('pgshift.limit', $1, true)"}
	for i := range args {
		sets = append(sets, fmt.Sprintf("set_config('pgshift.key%d', $%d, true)", i, i+2))
	}
	if _, err := tx.Exec(ctx, "SELECT "+strings.Join(sets, ", "), append([]any{strconv.Itoa(c.size)}, args...)...); err != nil {
		return 0, nil, err
	}
	// COPY's text is old's output form; new parses ISO dates, hex bytea and
	// full-precision floats alike under any setting of its own.
	if err := rowsync.SetSession(ctx, tx); err != nil {
		return 0, nil, err
	}
	query := fmt.Sprintf("COPY (SELECT %s FROM %s AS t WHERE %s ORDER BY %s LIMIT current_setting('pgshift.limit')::bigint) TO STDOUT",
		c.t.ColumnList(), c.t.Ident(), cond, c.t.KeyList())
	pr, pw := io.Pipe()
	var sent int64
	var sendErr error
	// CopyTo writes one row per Write and CopyFrom sends each Read as its
	// own message: unbuffered, every row would cost a pipe hand-off, a
	// write system call and a network message. 64 KiB go at once instead.
	buf := bufio.NewWriterSize(pw, 64<<10)
	tail := &lastLine{w: buf}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var tag pgconn.CommandTag
		tag, sendErr = tx.Conn().PgConn().CopyTo(ctx, tail, query)
		if sendErr == nil {
			sendErr = buf.Flush()
		}
		sent = tag.RowsAffected()
		pw.CloseWithError(sendErr)
	}()
	_, recvErr := dst.CopyFrom(ctx, pr, copyIn)
	pr.CloseWithError(errors.New("copy into new ended"))
	<-done
	if recvErr != nil {
		return 0, nil, recvErr
	}
	if sendErr != nil {
		return 0, nil, sendErr
	}
	var last []string
	if sent > 0 {
		if last, err = c.keyOf(tail.last); err != nil {
			return 0, nil, err
		}
	}
	return sent, last, tx.Commit(ctx)
}
