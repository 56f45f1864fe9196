package backfill

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// copyWhole copies keyless table j.t, leased as its one chunk, whole
// (copyTable), and reports it as one piece.
func (r *runner) copyWhole(ctx context.Context, j *job, chunk int, worker string) {
	if err := r.gentle(ctx, j, &copier{}); err != nil { // waits while old is busy (MaxOldActive)
		j.fail(err)
		return
	}
	rows, err := r.copyTable(ctx, j.t, chunk, worker)
	if errors.Is(err, errLeaseLost) {
		j.log.Warn("table taken over by another worker after its lease expired; leaving it")
		return
	}
	if err != nil {
		j.fail(fmt.Errorf("backfill %s: copy whole: %w", j.t, err))
		return
	}
	r.rate.take(rows)
	j.mu.Lock()
	j.res.Pieces++
	j.res.Rows += rows
	j.res.Inserted += rows
	j.mu.Unlock()
	tableDone, err := r.finished(ctx, j)
	if err != nil {
		j.fail(err)
		return
	}
	if r.opts.Progress != nil {
		r.opts.Progress(Progress{Table: j.t, Chunk: chunk, Rows: rows, Inserted: rows, Estimate: j.estimate, Done: tableDone})
	}
}

// copyTable replaces new's rows of t with old's, in one transaction on new:
// it takes the chunk (renewing its lease and holding its row, which other
// workers' leases skip, whatever the lease's expiry, until this transaction
// ends), empties new's table (TRUNCATE, no CASCADE), COPYs every row old
// holds in one snapshot (a REPEATABLE READ, READ ONLY transaction) straight
// into it, and records the chunk done. All or nothing: a copy that fails or
// is interrupted leaves new's table as it was, and a run after a finished
// one leaves one copy of each row, never two. It returns the rows copied.
func (r *runner) copyTable(ctx context.Context, t *rowsync.Table, chunk int, worker string) (int64, error) {
	piece := func(tx pgx.Tx, rows int64, done bool) error {
		n, err := progress.RecordBackfillPiece(ctx, tx, pgshiftdb.RecordBackfillPieceParams{
			Rows: rows, LeaseSeconds: r.opts.Lease.Seconds(), Done: done,
			TableSchema: t.Schema, TableName: t.Name, Chunk: int32(chunk), Worker: worker,
		})
		switch {
		case err != nil:
			return fmt.Errorf("record progress: %w", err)
		case n == 0:
			return errLeaseLost
		}
		return nil
	}
	tx, err := r.new.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := piece(tx, 0, false); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, "TRUNCATE "+t.Ident()); err != nil {
		return 0, fmt.Errorf("empty new's copy: %w", err)
	}
	src, err := r.old.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer func() { _ = src.Rollback(ctx) }()
	if err := rowsync.SetSession(ctx, src); err != nil {
		return 0, err
	}
	cols := t.ColumnList()
	rows, err := copyAcross(ctx, src.Conn().PgConn(), fmt.Sprintf("COPY (SELECT %s FROM %s) TO STDOUT", cols, t.Ident()),
		tx.Conn().PgConn(), fmt.Sprintf("COPY %s (%s) FROM STDIN", t.Ident(), cols), nil)
	if err != nil {
		return 0, err
	}
	if err := piece(tx, rows, true); err != nil {
		return 0, err
	}
	return rows, tx.Commit(ctx)
}
