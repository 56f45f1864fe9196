// Package backfill copies the rows of tables from the old database to the
// new one while the application keeps writing both.
//
// # Guarantees
//
//   - A row new already has is never overwritten: rows written to new by the
//     dual-writing facade are newer than anything backfill read from old.
//     Every chunk is written with INSERT semantics only, never UPDATE (see
//     How a chunk is copied).
//   - Many workers, one job: a table is planned once into chunks of key
//     ranges (pgshift.backfill_chunks on new, under a lock so concurrent
//     processes plan it once). Workers of any number of processes lease
//     chunks with FOR UPDATE SKIP LOCKED and an expiry (Options.Lease), so
//     they never wait for each other and a chunk whose worker died is
//     taken over when its lease runs out.
//   - Resumable: a chunk is copied in pieces of at most ChunkSize rows, each
//     committed on new in one transaction together with the chunk's
//     progress (the last key copied) and the renewal of its lease, so a
//     worker killed at any instant loses only its uncommitted piece and the
//     next worker goes on from the last committed key; no piece is counted
//     twice. A worker that lost its lease cannot record a piece: its
//     transaction rolls back. Chunks finish in any order; a table whose
//     chunks are all done is skipped by later runs unless Options.Restart.
//   - Keyset ranges (key > after AND key <= upto, ORDER BY key LIMIT size),
//     never OFFSET; COPY in text format, so enums and arrays of them survive
//     different type OIDs on the two servers.
//
// # How a chunk is copied
//
// Below, "chunk" is one piece of a leased chunk. Old streams it with COPY
// (SELECT ... ORDER BY key LIMIT size) TO
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
//
// # Copying a table whole
//
// A keyless table (rowsync.Table.Keyless: no primary key, no unique index
// on NOT NULL columns) has no key to chunk, to skip rows new has, or to
// close the delete race by, so none of the above applies to it. It is
// copied whole instead, as one chunk: in one transaction on new its rows
// there are emptied (TRUNCATE) and every row of one snapshot of old (a
// REPEATABLE READ transaction) is COPYed in; the chunk is recorded done in
// that transaction. So a copy is all or nothing, and running it again
// (Options.Restart) replaces new's copy rather than adding a second one.
// The worker holds the chunk's row for the whole copy, so another worker
// never starts a second copy while the first runs, however long its lease.
// This is right only for a table the application does not write during
// the migration (the dualwrite facade refuses to Touch a keyless table):
// a row written on old after the snapshot, or on new at all, is not in
// new's copy, and verify reports the difference. Options.MaxRate cannot
// slow one COPY: it spaces the pieces that follow it.
package backfill

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// The defaults of Options.
const (
	ChunkSizeDefault = 50_000
	LeaseDefault     = time.Minute
)

// Options tune a backfill. The zero value works.
type Options struct {
	// Workers is how many chunks this process copies at once, of one table
	// or of several tables of one foreign-key level (default 1). Other
	// processes may work on the same tables at the same time.
	Workers int
	// ChunkSize is how many rows a chunk is planned with, and the most rows
	// one piece of a chunk copies in one transaction (ChunkSizeDefault).
	ChunkSize int
	// Lease is how long a worker holds a chunk without committing a piece
	// of it before another worker may take the chunk over (LeaseDefault).
	// It must exceed the time one piece takes.
	Lease time.Duration
	// Worker names this process in the chunks' leases (default: host name,
	// process id and a random suffix); its workers add /1, /2, ...
	Worker string
	// MaxRate caps the rows per second this process copies, over all its
	// workers (0: no cap). Pieces are then at most half a second's worth.
	MaxRate float64
	// PieceTarget, when set, sizes each piece so that it takes about this
	// long (half a second is gentle on a busy server), between 500 rows and
	// four times ChunkSize, instead of ChunkSize rows each; a chunk's first
	// piece, to measure by, is a tenth of ChunkSize.
	PieceTarget time.Duration
	// MaxOldActive, when set, holds every piece back while old has more
	// active client sessions than this, checking once a second: old's own
	// traffic goes first. Sessions named "pgshift" (application_name, as
	// rowsync.Connect names them) do not count.
	MaxOldActive int
	// Restart forgets the tables' plans and progress and copies them again
	// (rows new has are still never overwritten). Run it with one process.
	Restart bool
	// Progress, when set, is called after every committed piece, from the
	// worker that copied it.
	Progress func(Progress)
	// Logger receives one line per table (default slog.Default()).
	Logger *slog.Logger

	// afterCopy, set by tests (WithAfterCopy), runs after a piece's rows
	// reached new and before its transaction commits: where a concurrent
	// delete races it.
	afterCopy func(*rowsync.Table)
}

func (o Options) withDefaults() Options {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.ChunkSize < 1 {
		o.ChunkSize = ChunkSizeDefault
	}
	if o.Lease <= 0 {
		o.Lease = LeaseDefault
	}
	if o.Worker == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.Worker = fmt.Sprintf("%s:%d:%x", host, os.Getpid(), b)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Progress is reported after each committed piece of a chunk.
type Progress struct {
	Table *rowsync.Table
	// Chunk is the chunk's number; Range the keys of this piece of it.
	Chunk int
	Range rowsync.Range
	// Rows is the number of rows read from old in this piece, Inserted the
	// number of them new did not already have.
	Rows, Inserted int64
	// Estimate is the table's row count as old's statistics estimate it.
	Estimate int64
	// Done is set when this piece finished the table's last chunk (every
	// worker's chunks done).
	Done bool
}

// Result is what a backfill did to one table.
type Result struct {
	Table *rowsync.Table
	// Chunks is the number of chunks in the table's plan; Pieces, Rows and
	// Inserted count this process's committed pieces, rows read from old
	// and rows inserted into new (the rest new already had).
	Chunks, Pieces int
	Rows, Inserted int64
	// AlreadyDone is set when every chunk was done before this run.
	AlreadyDone bool
	// Resumed is set when an earlier run (or another process) had copied
	// part of the table.
	Resumed bool
	// Whole is set for a keyless table, copied whole (see Copying a table
	// whole): Rows is then old's rows of one snapshot, all inserted into new
	// in place of what new held.
	Whole bool
	Err   error
}

// Run copies tables from old to new, parents before children: new's foreign
// keys refuse a row whose parent has not been copied yet, so tables go level
// by level of rowsync.ForeignKeyLevels (read on new). Each table is split
// into chunks of key ranges, planned once in pgshift.backfill_chunks on new;
// Options.Workers workers of this process, and those of any other process
// backfilling the same tables, lease the chunks of a level and copy them. A
// level ends when all its chunks are done, whoever copied them. A table's
// failure stops the levels after its own (their rows may need it); the
// results then hold only the tables started. The error is for what stops
// everything.
func Run(ctx context.Context, oldDB, newDB *pgxpool.Pool, tables []*rowsync.Table, opts Options) ([]Result, error) {
	opts = opts.withDefaults()
	if err := pgshiftdb.Install(ctx, newDB); err != nil {
		return nil, fmt.Errorf("backfill: on new: %w", err)
	}
	levels, err := rowsync.ForeignKeyLevels(ctx, newDB, tables)
	if err != nil {
		return nil, fmt.Errorf("backfill: on new: %w", err)
	}
	typed, err := rowsync.TypedHashOnBoth(ctx, oldDB, newDB)
	if err != nil {
		return nil, fmt.Errorf("backfill: %w", err)
	}
	var results []Result
	for _, level := range levels {
		r := &runner{old: oldDB, new: newDB, opts: opts, rate: newLimiter(opts.MaxRate), typed: typed}
		for _, t := range level {
			r.jobs = append(r.jobs, r.plan(ctx, t))
		}
		var wg sync.WaitGroup
		for i := range opts.Workers {
			worker := fmt.Sprintf("%s/%d", opts.Worker, i+1)
			wg.Go(func() { r.work(ctx, worker) })
		}
		wg.Wait()
		failed := false
		for _, j := range r.jobs {
			results = append(results, j.res)
			failed = failed || j.res.Err != nil
		}
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		if failed {
			return results, nil
		}
	}
	return results, nil
}

// runner is one level's backfill in this process.
type runner struct {
	old, new *pgxpool.Pool
	opts     Options
	jobs     []*job
	rate     *limiter
	// typed is rowsync.TypedHashOnBoth: the delete-race check's key
	// fingerprints hash keys by their types (Table.TypedHash).
	typed bool
}

// job is one table of a level.
type job struct {
	t        *rowsync.Table
	estimate int64
	log      *slog.Logger
	start    time.Time

	mu       sync.Mutex
	res      Result
	finished bool // every chunk done, by whichever worker
}

// over says the job needs no more work: finished or failed.
func (j *job) over() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.finished || j.res.Err != nil
}

func (j *job) fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.res.Err == nil {
		j.res.Err = err
	}
}

// plan loads the table's chunks, planning them first when no process has:
// under a lock on new, so that concurrent processes plan a table once.
func (r *runner) plan(ctx context.Context, table *rowsync.Table) *job {
	j := &job{res: Result{Table: table, Whole: table.Keyless()}, log: r.opts.Logger.With("op", "backfill", "table", table.String()), start: time.Now()}
	t := table
	if !t.Keyless() {
		var err error
		if t, err = alignKeyOrder(ctx, r.new, table, j.log); err != nil {
			j.res.Err = fmt.Errorf("backfill %s: %w", table, err)
			return j
		}
		t.TypedHash = r.typed // t is alignKeyOrder's copy
	}
	j.t = t
	err := pgx.BeginFunc(ctx, r.new, func(tx pgx.Tx) error {
		key := pgshiftdb.LockBackfillPlanParams{TableSchema: t.Schema, TableName: t.Name}
		if err := progress.LockBackfillPlan(ctx, tx, key); err != nil {
			return err
		}
		if r.opts.Restart {
			if err := progress.ForgetBackfill(ctx, tx, pgshiftdb.ForgetBackfillParams(key)); err != nil {
				return err
			}
		}
		p, err := progress.BackfillTableProgress(ctx, tx, pgshiftdb.BackfillTableProgressParams(key))
		if err != nil {
			return err
		}
		if p.Chunks > 0 {
			j.res.Chunks = int(p.Chunks)
			j.res.AlreadyDone = p.Done == p.Chunks
			j.res.Resumed = !j.res.AlreadyDone && p.RowsCopied > 0
			return nil
		}
		if t.Keyless() {
			// One chunk, the whole table (copyWhole).
			j.res.Chunks = 1
			return progress.PlanBackfillChunk(ctx, tx, pgshiftdb.PlanBackfillChunkParams{TableSchema: t.Schema, TableName: t.Name, Chunk: 1})
		}
		// The plan walks old's key index once, chunk size rows at a time;
		// rows old gains later fall into the chunk whose range holds them.
		var after []string
		for n := 1; ; n++ {
			rg, _, err := rowsync.NextChunk(ctx, r.old, t, after, r.opts.ChunkSize, false)
			if err != nil {
				return fmt.Errorf("plan on old: %w", err)
			}
			if err := progress.PlanBackfillChunk(ctx, tx, pgshiftdb.PlanBackfillChunkParams{
				TableSchema: t.Schema, TableName: t.Name, Chunk: int32(n), AfterKey: after, UptoKey: rg.Last,
			}); err != nil {
				return err
			}
			if rg.Last == nil {
				j.res.Chunks = n
				return nil
			}
			after = rg.Last
		}
	})
	if err != nil {
		j.res.Err = fmt.Errorf("backfill %s: plan: %w", t, err)
		return j
	}
	if j.res.AlreadyDone {
		j.finished = true
		j.log.Info("table already backfilled")
		return j
	}
	if j.estimate, err = rowsync.EstimateRows(ctx, r.old, t); err != nil {
		j.res.Err = fmt.Errorf("backfill %w", err)
	}
	return j
}

// work leases chunks of the level's tables, first table first, and copies
// them until every chunk is done. When the chunks left are leased by other
// workers it waits: they finish them, or their leases expire and it takes
// them over.
func (r *runner) work(ctx context.Context, worker string) {
	wait := min(max(r.opts.Lease/4, 50*time.Millisecond), 500*time.Millisecond)
	for ctx.Err() == nil {
		copied, pending := false, false
		for _, j := range r.jobs {
			if j.over() {
				continue
			}
			l, err := progress.LeaseBackfillChunk(ctx, r.new, pgshiftdb.LeaseBackfillChunkParams{
				Worker: worker, LeaseSeconds: r.opts.Lease.Seconds(), TableSchema: j.t.Schema, TableName: j.t.Name,
			})
			if errors.Is(err, pgx.ErrNoRows) {
				finished, err := r.finished(ctx, j)
				if err != nil {
					j.fail(err)
				}
				pending = pending || !finished
				continue
			}
			if err != nil {
				j.fail(fmt.Errorf("backfill %s: lease a chunk: %w", j.t, err))
				continue
			}
			r.copyChunk(ctx, j, l, worker)
			copied = true
			break
		}
		if !copied {
			if !pending {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

// finished says whether every chunk of j is done, and marks j so once.
func (r *runner) finished(ctx context.Context, j *job) (bool, error) {
	p, err := progress.BackfillTableProgress(ctx, r.new, pgshiftdb.BackfillTableProgressParams{TableSchema: j.t.Schema, TableName: j.t.Name})
	if err != nil {
		return false, fmt.Errorf("backfill %s: read progress: %w", j.t, err)
	}
	if p.Done < p.Chunks {
		return false, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.finished {
		j.finished = true
		j.log.Info("table backfilled", "chunks", p.Chunks, "rows", p.RowsCopied, "this_process_rows", j.res.Rows,
			"inserted", j.res.Inserted, "resumed", j.res.Resumed, "seconds", time.Since(j.start).Seconds())
	}
	return true, nil
}

// copyChunk copies a leased chunk piece by piece from where it stands; the
// one chunk of a keyless table whole.
func (r *runner) copyChunk(ctx context.Context, j *job, l pgshiftdb.LeaseBackfillChunkRow, worker string) {
	if j.t.Keyless() {
		r.copyWhole(ctx, j, int(l.Chunk), worker)
		return
	}
	c := copier{
		old: r.old, new: r.new, t: j.t, size: r.opts.ChunkSize, direct: true, afterCopy: r.opts.afterCopy,
		chunk: int(l.Chunk), upto: l.UptoKey, worker: worker, lease: r.opts.Lease,
	}
	if r.opts.PieceTarget > 0 {
		c.size = max(r.opts.ChunkSize/10, 500) // a first piece to measure by
	}
	after := l.AfterKey
	if l.CopiedUpto != nil {
		after = l.CopiedUpto
		j.mu.Lock()
		j.res.Resumed = true
		j.mu.Unlock()
	}
	for {
		if err := r.gentle(ctx, j, &c); err != nil {
			j.fail(err)
			return
		}
		started := time.Now()
		rg, rows, inserted, done, err := c.piece(ctx, after)
		for try := 1; err != nil && passing(err) && try < pieceTries && ctx.Err() == nil; try++ {
			// Nothing of the piece committed: copy it again once what
			// the application is writing has landed.
			j.log.Debug("piece failed on a row the application is writing; trying it again", "chunk", l.Chunk, "try", try, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(pieceRetryWait << (try - 1)):
			}
			rg, rows, inserted, done, err = c.piece(ctx, after)
		}
		if errors.Is(err, errLeaseLost) {
			j.log.Warn("chunk taken over by another worker after its lease expired; leaving it", "chunk", l.Chunk)
			return
		}
		if err != nil {
			j.fail(err)
			return
		}
		r.resize(&c, rows, time.Since(started))
		j.mu.Lock()
		j.res.Pieces++
		j.res.Rows += rows
		j.res.Inserted += inserted
		j.mu.Unlock()
		tableDone := false
		if done {
			if tableDone, err = r.finished(ctx, j); err != nil {
				j.fail(err)
				return
			}
		}
		if r.opts.Progress != nil {
			r.opts.Progress(Progress{Table: j.t, Chunk: int(l.Chunk), Range: rg, Rows: rows, Inserted: inserted, Estimate: j.estimate, Done: tableDone})
		}
		if done {
			return
		}
		after = rg.Last
	}
}

// gentle holds the next piece back while old is busier than
// Options.MaxOldActive allows, and sizes it for Options.MaxRate.
func (r *runner) gentle(ctx context.Context, j *job, c *copier) error {
	if r.opts.MaxRate > 0 {
		c.size = max(min(c.size, int(r.opts.MaxRate/2)), 1)
	}
	warned := false
	for r.opts.MaxOldActive > 0 {
		var active int
		if err := r.old.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
			  AND application_name <> 'pgshift'`).Scan(&active); err != nil {
			return fmt.Errorf("backfill %s: count old's active sessions: %w", j.t, err)
		}
		if active <= r.opts.MaxOldActive {
			return nil
		}
		if !warned {
			j.log.Info("old is busy: waiting before the next piece", "active_sessions", active, "limit", r.opts.MaxOldActive)
			warned = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return nil
}

// resize waits out Options.MaxRate for the piece just copied, and sizes the
// next one for Options.PieceTarget.
func (r *runner) resize(c *copier, rows int64, took time.Duration) {
	r.rate.take(rows)
	if r.opts.PieceTarget > 0 && rows > 0 && took > 0 {
		next := float64(rows) * float64(r.opts.PieceTarget) / float64(took)
		c.size = int(min(max(next, 500), float64(4*r.opts.ChunkSize)))
	}
}

// limiter spaces pieces so that rows go at most rate per second.
type limiter struct {
	rate float64
	mu   sync.Mutex
	next time.Time
}

func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: rate}
}

// take charges rows and sleeps until the rate allows more.
func (l *limiter) take(rows int64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(rows) / l.rate * float64(time.Second)))
	wait := time.Until(l.next)
	l.mu.Unlock()
	time.Sleep(wait)
}

// progress runs the statements of pgshift.backfill_chunks.
var progress = pgshiftdb.New()

// A piece that fails on what the application's writes are doing at that
// moment is copied again, up to pieceTries times, waiting pieceRetryWait,
// then twice that, and so on: a child row whose parent a dual write has
// committed on old and not yet on new (in dualwrite the copy to new
// follows the caller's acknowledgement, or the repair worker makes it) is
// refused by new's foreign key until the parent arrives, and a dual write
// can deadlock with a piece on new.
const (
	pieceTries     = 6
	pieceRetryWait = 50 * time.Millisecond
)

// passing says a piece's error may pass on its own: a foreign key the
// application's writes have not satisfied yet, a deadlock or a
// serialization failure.
func passing(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, new(settleError)) || !errors.As(err, &pgErr) {
		return false // a committed piece's delete check is not copied again
	}
	switch pgErr.Code {
	case pgerrcode.ForeignKeyViolation, pgerrcode.DeadlockDetected, pgerrcode.SerializationFailure:
		return true
	}
	return false
}

// settleError is a failure of settleDeletes, after its piece committed.
type settleError struct{ error }

func (e settleError) Unwrap() error { return e.error }

// errLeaseLost says another worker took the chunk over (this one's lease
// expired): the piece rolled back, and the chunk is the other worker's.
var errLeaseLost = errors.New("lease lost")

// copier copies the pieces of one leased chunk from old to new.
type copier struct {
	old, new *pgxpool.Pool
	t        *rowsync.Table
	size     int
	// chunk and upto are the leased chunk's number and last key (nil: the
	// table's end); worker and lease renew its lease with every piece.
	chunk  int
	upto   []string
	worker string
	lease  time.Duration
	// direct is set while pieces are tried with a direct COPY; it is
	// cleared when new turns out to hold rows where the next piece goes and
	// set again after a piece whose rows new held none of.
	direct bool
	// xid is the transaction of the last committed piece, for
	// settleDeletes.
	xid string
	// afterCopy is Options.afterCopy.
	afterCopy func(*rowsync.Table)
}

// piece copies the up to c.size rows of the chunk after key after (nil:
// from the start) and records them with the chunk, in one transaction on
// new. It returns the piece's range (Last: the last key copied) and done
// when the piece reached the chunk's end.
func (c *copier) piece(ctx context.Context, after []string) (r rowsync.Range, rows, inserted int64, done bool, err error) {
	fail := func(err error) error {
		if errors.Is(err, errLeaseLost) {
			return err
		}
		return fmt.Errorf("backfill %s: chunk %d after %v: %w", c.t, c.chunk, after, err)
	}
	// settle closes the delete race over the keys the piece covered.
	settle := func(r rowsync.Range, inserted int64) error {
		if r.Last == nil {
			r.Last = c.upto
		}
		return c.settleDeletes(ctx, r, inserted)
	}
	if c.direct {
		r, rows, copied, err := c.copyDirect(ctx, after)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UniqueViolation: // a dual write got there first
			c.direct = false
		case err != nil:
			return r, 0, 0, false, fail(err)
		case copied:
			return r, rows, rows, r.Last == nil, settle(r, rows)
		default: // new's next row follows after: nothing to copy directly
			c.direct = false
		}
	}
	r, rows, inserted, err = c.copySafe(ctx, after)
	if err != nil {
		return r, 0, 0, false, fail(err)
	}
	c.direct = inserted == rows
	return r, rows, inserted, r.Last == nil, settle(r, inserted)
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
// case costs two index scans, one per side at once: when both sides hold the
// same keys in r (KeyFingerprint) nothing was deleted. Their order does not
// matter: both are read after the piece committed, when a resurrected row is
// already missing from old's keys and present in new's, and a difference
// from a write between the two reads only sends the check the precise way.
func (c *copier) settleDeletes(ctx context.Context, r rowsync.Range, inserted int64) error {
	if inserted == 0 {
		return nil // nothing of this chunk's can have come back
	}
	fail := func(what string, err error) error {
		return settleError{fmt.Errorf("backfill %s: chunk %d: re-check deletes: %s: %w", c.t, c.chunk, what, err)}
	}
	var fp [2]string // old's, new's
	var g errgroup.Group
	for i, db := range []*pgxpool.Pool{c.old, c.new} {
		g.Go(func() (err error) {
			if fp[i], err = rowsync.KeyFingerprint(ctx, db, c.t, r); err != nil {
				return fail([2]string{"old", "new"}[i], err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if fp[0] == fp[1] {
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
func (c *copier) copyDirect(ctx context.Context, after []string) (r rowsync.Range, rows int64, copied bool, err error) {
	r.After = after
	tx, err := c.new.Begin(ctx)
	if err != nil {
		return r, 0, false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	before, err := rowsync.FirstKeyIn(ctx, tx, c.t, rowsync.Range{After: after, Last: c.upto})
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
	if err := c.record(ctx, tx, r, rows); err != nil {
		return r, 0, false, err
	}
	return r, rows, true, tx.Commit(ctx)
}

// copySafe COPYs old's rows after key after, up to c.size, into a
// temporary table on new and inserts those new does not have.
func (c *copier) copySafe(ctx context.Context, after []string) (r rowsync.Range, rows, inserted int64, err error) {
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
	if err := c.record(ctx, tx, r, rows); err != nil {
		return r, 0, 0, err
	}
	return r, rows, tag.RowsAffected(), tx.Commit(ctx)
}

// record adds the piece r (Last nil: the chunk's end reached) to the
// chunk's progress in the piece's transaction, and renews the lease:
// errLeaseLost when another worker holds the chunk now.
func (c *copier) record(ctx context.Context, tx pgx.Tx, r rowsync.Range, rows int64) error {
	n, err := progress.RecordBackfillPiece(ctx, tx, pgshiftdb.RecordBackfillPieceParams{
		CopiedUpto: r.Last, Rows: rows, LeaseSeconds: c.lease.Seconds(), Done: r.Last == nil,
		TableSchema: c.t.Schema, TableName: c.t.Name, Chunk: int32(c.chunk), Worker: c.worker,
	})
	if err != nil {
		return fmt.Errorf("record progress: %w", err)
	}
	if n == 0 {
		return errLeaseLost
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
	cond, args := c.t.RangeCond("t", rowsync.Range{After: after, Last: c.upto}, setting)
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
		c.t.ColumnList(), c.t.Ident(), cond, c.t.KeyOrder())
	var tail *lastLine
	sent, err := copyAcross(ctx, tx.Conn().PgConn(), query, dst, copyIn, func(w io.Writer) io.Writer {
		tail = &lastLine{w: w}
		return tail
	})
	if err != nil {
		return 0, nil, err
	}
	var last []string
	if sent > 0 {
		if last, err = c.keyOf(tail.last); err != nil {
			return 0, nil, err
		}
	}
	return sent, last, tx.Commit(ctx)
}

// copyAcross streams src's COPY ... TO STDOUT query into dst's COPY ...
// FROM STDIN statement copyIn, no row decoded in Go, and returns how many
// rows src sent. wrap, when set, wraps the writer the rows go through.
func copyAcross(ctx context.Context, src *pgconn.PgConn, query string, dst *pgconn.PgConn, copyIn string, wrap func(io.Writer) io.Writer) (int64, error) {
	pr, pw := io.Pipe()
	var sent int64
	var sendErr error
	// CopyTo writes one row per Write and CopyFrom sends each Read as its
	// own message: unbuffered, every row would cost a pipe hand-off, a
	// write system call and a network message. 64 KiB go at once instead.
	buf := bufio.NewWriterSize(pw, 64<<10)
	var w io.Writer = buf
	if wrap != nil {
		w = wrap(buf)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var tag pgconn.CommandTag
		tag, sendErr = src.CopyTo(ctx, w, query)
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
		return 0, recvErr
	}
	return sent, sendErr
}

// alignKeyOrder returns a copy of t (loaded from old) whose key order new
// shares (rowsync.AlignKeyOrder): chunks are key ranges planned on old and
// applied on new, so both must sort keys alike. It warns when that costs
// the key index.
func alignKeyOrder(ctx context.Context, newDB *pgxpool.Pool, t *rowsync.Table, log *slog.Logger) (*rowsync.Table, error) {
	aligned := *t
	unmatched, err := rowsync.AlignKeyOrder(ctx, newDB, &aligned)
	if err != nil {
		return nil, err
	}
	if len(unmatched) > 0 {
		log.Warn("the key's collations differ between old and new (or their versions are unknown): keys are compared in byte order, which the key index cannot serve, so each chunk scans the table",
			"columns", unmatched)
	}
	return &aligned, nil
}
