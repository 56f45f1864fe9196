package dualwrite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// ErrDiverged is returned by a write function running on the other side when
// that side's result shows it does not hold what the authoritative side holds
// (an update or delete that found no row, say, because the row has not been
// backfilled yet). The facade then leaves the row to the repair worker.
var ErrDiverged = errors.New("dualwrite: other side differs from the authoritative side")

type touchedRow struct {
	schema, table string
	key           []string
}

// WriteFunc is one write, run once per side that the stage writes. On the
// authoritative side prev is nil; on the other side it points to the
// authoritative run's result, so values the authoritative side assigned
// (identity keys from RETURNING) can be written as they are.
type WriteFunc[T any] func(ctx context.Context, tx *Tx, prev *T) (T, error)

// Write runs fn as the stage of the user in ctx says: on the authoritative
// side, and then, when the stage writes both, on the other side, with the
// guarantee described in the package documentation. The result and error are
// the authoritative side's.
func Write[T any](ctx context.Context, f *Facade, op Op, fn WriteFunc[T]) (T, error) {
	stage, err := f.stage(ctx, op)
	if err != nil {
		var zero T
		return zero, err
	}
	plan := stage.Plan()
	auth := plan.Authoritative
	start := time.Now()
	res, otherWork, err := writeAuthoritative(ctx, f, op, plan, fn)
	f.m.record(ctx, op.Name, kindWrite, auth, start, err)
	if err != nil {
		return res, err
	}
	recordOutcome(ctx, op, stage, auth)
	if otherWork != nil {
		// Synchronously: the caller's next write may depend on this one
		// (a post for the user just created), and the other side must see
		// this commit before it runs that.
		otherWork()
	}
	return res, nil
}

// writeAuthoritative runs the authoritative transaction and, inside it, the
// other side's statements. It returns a function that finishes the other side
// (commit; the log clean-up is batched) after the authoritative commit, or nil.
func writeAuthoritative[T any](ctx context.Context, f *Facade, op Op, plan flags.Plan, fn WriteFunc[T]) (res T, finish func(), err error) {
	auth := plan.Authoritative
	atx, err := f.newTx(ctx, op, auth, true)
	if err != nil {
		return res, nil, fmt.Errorf("%s: connect to %s: %w", op.Name, auth, err)
	}
	atx.logTouches = plan.WriteOther
	defer func() {
		if err != nil {
			atx.rollback(context.WithoutCancel(ctx))
		}
	}()
	if res, err = fn(ctx, atx, nil); err != nil {
		return res, nil, err
	}
	if !plan.WriteOther {
		if err = atx.commit(ctx); err != nil {
			return res, nil, fmt.Errorf("%s: commit on %s: %w", op.Name, auth, err)
		}
		return res, nil, nil
	}
	if err = atx.flushLog(ctx); err != nil {
		return res, nil, fmt.Errorf("%s: record repair log on %s: %w", op.Name, auth, err)
	}
	// The other side runs while the authoritative row locks and advisory
	// locks are held; see the package documentation for why not in parallel.
	otx, octx, otherCancel, otherErr := writeOther(ctx, f, op, plan, fn, &res)
	if err = atx.commit(ctx); err != nil {
		if otx != nil {
			otx.rollback(octx)
		}
		otherCancel()
		return res, nil, fmt.Errorf("%s: commit on %s: %w", op.Name, auth, err)
	}
	ids := atx.logIDs
	finish = func() {
		defer otherCancel()
		other := auth.Other()
		if otherErr == nil {
			otherErr = otx.commit(octx)
		}
		if otherErr != nil {
			f.m.otherFailed(ctx, op.Name, other)
			f.log.Debug("other side missed a write; left to repair", "op", op.Name, "side", other,
				"routing_key", flags.RoutingKey(ctx), "err", otherErr)
			return
		}
		f.deletes.add(auth, ids)
	}
	return res, finish, nil
}

// writeOther runs fn on the other side in a transaction it does not commit.
// On failure the transaction is already rolled back and the error returned.
func writeOther[T any](ctx context.Context, f *Facade, op Op, plan flags.Plan, fn WriteFunc[T], prev *T) (*Tx, context.Context, context.CancelFunc, error) {
	other := plan.Authoritative.Other()
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.OtherTimeout)
	start := time.Now()
	otx, err := f.newTx(octx, op, other, false)
	if err == nil {
		if _, err = fn(octx, otx, prev); err != nil {
			otx.rollback(octx)
		}
	}
	f.m.record(ctx, op.Name, kindWrite, other, start, err)
	if err != nil {
		return nil, octx, cancel, err
	}
	return otx, octx, cancel, nil
}

// logParams builds the repair-log record of rows, sorted so that two writes
// touching the same rows take their advisory locks in the same order.
func logParams(rows []touchedRow, op, routingKey string) (pgshiftdb.LogTouchedRowsParams, error) {
	sort.Slice(rows, func(i, j int) bool { return rowLess(rows[i], rows[j]) })
	arg := pgshiftdb.LogTouchedRowsParams{
		TableSchemas: make([]string, len(rows)),
		TableNames:   make([]string, len(rows)),
		Keys:         make([]string, len(rows)),
		Op:           op,
		RoutingKey:   routingKey,
	}
	for i, r := range rows {
		arg.TableSchemas[i], arg.TableNames[i] = r.schema, r.table
		b, err := json.Marshal(r.key)
		if err != nil {
			return arg, err
		}
		arg.Keys[i] = string(b)
	}
	return arg, nil
}

func rowLess(a, b touchedRow) bool {
	if a.schema != b.schema {
		return a.schema < b.schema
	}
	if a.table != b.table {
		return a.table < b.table
	}
	for i := 0; i < len(a.key) && i < len(b.key); i++ {
		if a.key[i] != b.key[i] {
			return a.key[i] < b.key[i]
		}
	}
	return len(a.key) < len(b.key)
}

// Exec is a convenience for write functions that return nothing but an
// error: it adapts fn to Write.
func Exec(ctx context.Context, f *Facade, op Op, fn func(ctx context.Context, tx *Tx) error) error {
	_, err := Write(ctx, f, op, func(ctx context.Context, tx *Tx, _ *struct{}) (struct{}, error) {
		return struct{}{}, fn(ctx, tx)
	})
	return err
}
