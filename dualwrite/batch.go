package dualwrite

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshift/pgshift/internal/pgxrow"
)

// errNoMoreResults is what reading past a batch's last statement returns, as
// pgx does.
var errNoMoreResults = errors.New("dualwrite: no more results in batch")

// SendBatch sends the statements of b in one round trip, in the write's
// transaction, and returns their results (sqlc's :batchexec, :batchmany and
// :batchone code runs on it). To the facade a batch is the write function's
// statements like any other: the rows Touched before it are locked and
// recorded in the same round trip, the other side runs the same batch when
// the write function runs there, and for Op.OneStatement a batch counts as
// the one statement (the COMMIT then goes after its last statement, under
// the rules of Touch). Read every result, or Close the results, before the
// write function's next statement, as with pgx. Results.Tx is nil: a
// write's batch runs in the write's transaction and cannot begin one of its
// own (pgx.Batch.BeginTx).
func (tx *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	n := b.Len()
	if n == 0 {
		return &txBatch{tx: tx}
	}
	direct, err := tx.beforeStatement(ctx)
	if err != nil {
		return &txBatch{tx: tx, err: err}
	}
	if direct != nil {
		return &txBatch{tx: tx, br: direct.SendBatch(ctx, b), qs: b.QueuedQueries}
	}
	br, err := tx.send(ctx, &statement{batch: b})
	if err != nil {
		return &txBatch{tx: tx, err: err}
	}
	res := &txBatch{tx: tx, br: br, qs: b.QueuedQueries}
	if tx.inlined {
		tx.unread = func() { _ = res.Close() }
	}
	return res
}

// txBatch are the results of a write function's batch: positioned at its
// first statement (the facade's own statements before it have been read),
// ending at its last (an inline COMMIT after it is read by Close).
type txBatch struct {
	tx     *Tx
	br     pgx.BatchResults // nil: err, or an empty batch
	qs     []*pgx.QueuedQuery
	read   int // results of qs read so far
	err    error
	closed bool
}

// next claims the next result of the batch, or says why there is none.
func (b *txBatch) next() error {
	switch {
	case b.err != nil:
		return b.err
	case b.closed:
		return errors.New("dualwrite: batch already closed")
	case b.read >= len(b.qs):
		return errNoMoreResults
	}
	b.read++
	return nil
}

func (b *txBatch) Exec() (pgconn.CommandTag, error) {
	if err := b.next(); err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, err := b.br.Exec()
	return ct, b.tx.outcome(err)
}

func (b *txBatch) Query() (pgx.Rows, error) {
	if err := b.next(); err != nil {
		return nil, err
	}
	rows, err := b.br.Query()
	if err != nil {
		return rows, b.tx.outcome(err)
	}
	return &outcomeRows{Rows: rows, tx: b.tx}, nil
}

func (b *txBatch) QueryRow() pgx.Row { return pgxrow.From(b.Query()) }

// Close reads the results not read yet (running the callbacks queued with
// them, as pgx does, until one fails), then what follows the batch (an
// inline COMMIT), and returns the first error.
func (b *txBatch) Close() error {
	if b.closed || b.br == nil {
		b.closed = true
		return b.err
	}
	b.tx.unread = nil
	for b.read < len(b.qs) {
		at := b.read
		var err error
		if fn := b.qs[at].Fn; fn != nil && b.err == nil {
			err = fn(b)
		}
		if b.read == at { // no callback, or one that read nothing, or an error before
			b.read++
			_, rerr := b.br.Exec()
			if err == nil {
				err = b.tx.outcome(rerr)
			}
		}
		if b.err == nil {
			b.err = err
		}
	}
	b.closed = true
	if err := b.tx.closeBatch(b.br); b.err == nil {
		b.err = err
	}
	return b.err
}

// Tx is nil: see Tx.SendBatch.
func (b *txBatch) Tx() pgx.Tx { return nil }
