package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// ErrKeylessTable is matched (errors.Is) by the error of a write that
// Touched a row of a table without a key (no primary key, no unique index on
// NOT NULL columns), a *KeylessTableError. Nothing was written on either
// side.
var ErrKeylessTable = errors.New("dualwrite: a write Touched a row of a table without a key")

// KeylessTableError is the error of a write, in a stage that writes both
// sides, whose function Touched a row of a table that has no key: the repair
// log, the rows' locks and every repair name a row by its key, so such a
// table cannot be written to both sides with the guarantee. The write is
// refused before anything of it reaches either side. pgshift's operator
// tools handle a keyless table only if the application does not write it
// during the migration (they copy it whole, or leave it out).
type KeylessTableError struct {
	Op            string
	Schema, Table string
}

func (e *KeylessTableError) Error() string {
	q := pgx.Identifier{e.Schema, e.Table}.Sanitize()
	return fmt.Sprintf("dualwrite: %s Touched a row of %s, which has no primary key and no unique index on NOT NULL columns: "+
		"the repair log names rows by key, so the facade cannot write it to both sides, and nothing was written; "+
		"add a key on old and new (ALTER TABLE %s ADD PRIMARY KEY (...)), or stop writing the table during the migration "+
		"and copy it whole (pgshift backfill --copy-whole %s) or leave it out (--exclude-table %s)",
		e.Op, q, q, e.Table, e.Table)
}

// Is makes errors.Is(err, ErrKeylessTable) true.
func (e *KeylessTableError) Is(target error) bool { return target == ErrKeylessTable }

// learnKeyedTables notes the tables of Config.Schema that have a key, from
// the catalog of the first side that answers: a Touch of one of them costs
// no look-up. A side that does not answer is not an error here (the facade
// must start while one is down); the tables are then looked up when first
// Touched.
func (f *Facade) learnKeyedTables(ctx context.Context) {
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		keyed, err := rowsync.Keyed(ctx, f.pool(side), f.cfg.Schema, nil)
		if err != nil {
			f.log.Debug("cannot read which tables have a key; they are looked up when first Touched", "side", side, "err", err)
			continue
		}
		for t, k := range keyed {
			if k {
				f.keyed.Store(t, struct{}{})
			}
		}
		return
	}
}

// noteTouched notes table, Touched by the write, for refuseKeyless unless
// the facade knows it has a key.
func (tx *Tx) noteTouched(table string) {
	if _, ok := tx.w.f.keyed.Load(table); ok {
		return
	}
	for _, t := range tx.unchecked {
		if t == table {
			return
		}
	}
	tx.unchecked = append(tx.unchecked, table)
}

// refuseKeyless fails the write (a *KeylessTableError, and so every later
// statement and the write itself) when it Touched a row of a table without a
// key. It runs before the statement the rows' locks and records would go
// with, and after the write function returned, so the write is refused
// before any of it is sent. Tables the facade does not know to be keyed are
// looked up in the catalog of the Tx's side, one query for all of them; a
// table found keyed, or not found at all (not this check's business), is
// not looked up again by this Facade. A keyless one is, at every write that
// Touches it, so a key added while the application runs is seen at once.
func (tx *Tx) refuseKeyless(ctx context.Context) error {
	if tx.keyless != nil || len(tx.unchecked) == 0 {
		return tx.keyless
	}
	tables := tx.unchecked
	tx.unchecked = nil
	var q pgshift.Querier = tx.pool
	if tx.conn != nil {
		q = tx.conn
	}
	f := tx.w.f
	keyed, err := rowsync.Keyed(ctx, q, f.cfg.Schema, tables)
	if err != nil {
		tx.unchecked = tables
		return fmt.Errorf("look up the keys of %s on %s: %w", strings.Join(tables, ", "), tx.side, err)
	}
	for _, t := range tables {
		if k, found := keyed[t]; k || !found {
			f.keyed.Store(t, struct{}{})
			continue
		}
		tx.keyless = &KeylessTableError{Op: tx.w.op.Name, Schema: f.cfg.Schema, Table: t}
	}
	return tx.keyless
}

// refusingKeyless wraps fn so that a write function that Touched a row of a
// keyless table fails (refuseKeyless) when it returns, before anything more
// of the write is sent, whatever it made of its statements' errors. A Tx
// whose COMMIT went with its statement is past refusing: rows Touched after
// it are ErrTouchAfterCommit's case.
func refusingKeyless[T any](fn WriteFunc[T]) WriteFunc[T] {
	return func(ctx context.Context, tx *Tx, prev *T) (T, error) {
		res, err := fn(ctx, tx, prev)
		if err == nil && !tx.done {
			err = tx.refuseKeyless(ctx)
		}
		return res, err
	}
}
