package dualwrite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/dualwrite/internal/logdb"
	"github.com/pgshift/pgshift/flags"
)

// ErrDiverged is returned by a write function running on the other side when
// that side's result shows it does not hold what the authoritative side holds
// (an update or delete that found no row, say, because the row has not been
// backfilled yet). The facade then leaves the row to the repair worker.
var ErrDiverged = errors.New("dualwrite: other side differs from the authoritative side")

// Tx is what a write function runs its statements on: a transaction on one
// side. It satisfies the DBTX interface sqlc generates, so generated queries
// run on it unchanged.
type Tx struct {
	pgx.Tx
	side          flags.Side
	authoritative bool
	schema        string
	touched       []touchedRow
}

type touchedRow struct {
	schema, table string
	key           []string
}

// Side is the database this Tx writes.
func (tx *Tx) Side() flags.Side { return tx.side }

// Authoritative reports whether this Tx writes the authoritative side (the
// first run of a write function).
func (tx *Tx) Authoritative() bool { return tx.authoritative }

// Touch reports that the write changed (inserted, updated or deleted) the row
// of table with the given primary key values, in key column order. Every
// write function must Touch each row it changes on the authoritative side:
// the repair log is made of these. Key values may be strings, integers,
// fmt.Stringers (uuid.UUID) or time.Time.
func (tx *Tx) Touch(table string, key ...any) {
	if !tx.authoritative {
		return
	}
	text := make([]string, len(key))
	for i, v := range key {
		text[i] = keyText(v)
	}
	tx.touched = append(tx.touched, touchedRow{schema: tx.schema, table: table, key: text})
}

func keyText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int:
		return strconv.Itoa(v)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
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
	stage := f.stage(ctx, op)
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
		f.bg.Add(1)
		go func() {
			defer f.bg.Done()
			otherWork()
		}()
	}
	return res, nil
}

// writeAuthoritative runs the authoritative transaction and, inside it, the
// other side's statements. It returns a function that finishes the other side
// (commit, log clean-up) after the authoritative commit, or nil.
func writeAuthoritative[T any](ctx context.Context, f *Facade, op Op, plan flags.Plan, fn WriteFunc[T]) (res T, finish func(), err error) {
	auth := plan.Authoritative
	ptx, err := f.pool(auth).Begin(ctx)
	if err != nil {
		return res, nil, fmt.Errorf("%s: begin on %s: %w", op.Name, auth, err)
	}
	defer func() {
		if err != nil {
			_ = ptx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	atx := &Tx{Tx: ptx, side: auth, authoritative: true, schema: f.schema}
	if res, err = fn(ctx, atx, nil); err != nil {
		return res, nil, err
	}
	if !plan.WriteOther {
		if err = ptx.Commit(ctx); err != nil {
			return res, nil, fmt.Errorf("%s: commit on %s: %w", op.Name, auth, err)
		}
		return res, nil, nil
	}

	ids, err := f.logTouched(ctx, atx, op)
	if err != nil {
		return res, nil, fmt.Errorf("%s: record repair log on %s: %w", op.Name, auth, err)
	}
	// The other side runs while the authoritative row locks and advisory
	// locks are held; see the package documentation for why not in parallel.
	otx, octx, otherCancel, otherErr := writeOther(ctx, f, op, plan, fn, &res)
	if err = ptx.Commit(ctx); err != nil {
		if otx != nil {
			_ = otx.Rollback(context.WithoutCancel(ctx))
		}
		otherCancel()
		return res, nil, fmt.Errorf("%s: commit on %s: %w", op.Name, auth, err)
	}
	finish = func() {
		defer otherCancel()
		other := auth.Other()
		if otherErr == nil {
			otherErr = otx.Commit(octx)
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
func writeOther[T any](ctx context.Context, f *Facade, op Op, plan flags.Plan, fn WriteFunc[T], prev *T) (pgx.Tx, context.Context, context.CancelFunc, error) {
	other := plan.Authoritative.Other()
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.otherTimeout)
	start := time.Now()
	otx, err := f.pool(other).Begin(octx)
	if err == nil {
		if _, err = fn(octx, &Tx{Tx: otx, side: other, schema: f.schema}, prev); err != nil {
			_ = otx.Rollback(octx)
		}
	}
	f.m.record(ctx, op.Name, kindWrite, other, start, err)
	if err != nil {
		return nil, octx, cancel, err
	}
	return otx, octx, cancel, nil
}

// logTouched records the rows the authoritative run touched in the repair log
// and takes their advisory locks, in a stable order so that two writes
// touching the same rows cannot deadlock.
func (f *Facade) logTouched(ctx context.Context, atx *Tx, op Op) ([]int64, error) {
	if len(atx.touched) == 0 {
		return nil, nil
	}
	rows := atx.touched
	sort.Slice(rows, func(i, j int) bool { return rowLess(rows[i], rows[j]) })
	arg := logdb.LogTouchedRowsParams{
		TableSchemas: make([]string, len(rows)),
		TableNames:   make([]string, len(rows)),
		Keys:         make([]string, len(rows)),
		Op:           op.Name,
		RoutingKey:   flags.RoutingKey(ctx),
	}
	for i, r := range rows {
		arg.TableSchemas[i], arg.TableNames[i] = r.schema, r.table
		b, err := json.Marshal(r.key)
		if err != nil {
			return nil, err
		}
		arg.Keys[i] = string(b)
	}
	return f.q.LogTouchedRows(ctx, atx, arg)
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
