package rowsync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// KeyError is a key Apply could not write, and why.
type KeyError struct {
	Source *Source
	Index  int // into the Source's keys
	Err    error
}

// Apply makes dst hold, for every key of every source (each of another
// table), what the source holds, in an order that works:
//
//   - deletes before upserts, so a row that takes over a unique value from
//     a deleted row arrives after it is gone;
//   - deletes children first and upserts parents first, by the foreign keys
//     of dst's catalog (ForeignKeyLevels, as backfill orders tables);
//   - a batch that fails is split into its rows, each in a savepoint of its
//     own, and rows that failed are tried again after the others, round
//     after round while a round writes something (a row that references
//     another of its table, a child that moves to a new parent before its
//     old parent goes);
//   - rows still refused for a unique value they take from one another
//     (two rows swapping a value) are replaced together (Source.Replace).
//
// The keys that could not be written are returned, each with its error;
// everything else is written. The error is for dst failing as a whole
// (its transaction aborted, the connection lost).
func Apply(ctx context.Context, dst pgx.Tx, sources []*Source) ([]KeyError, error) {
	if len(sources) == 0 {
		return nil, nil
	}
	level := map[*Table]int{}
	if len(sources) > 1 {
		tables := make([]*Table, len(sources))
		for i, s := range sources {
			tables[i] = s.t
		}
		levels, err := ForeignKeyLevels(ctx, dst, tables)
		if err != nil {
			return nil, fmt.Errorf("order tables: %w", err)
		}
		for i, l := range levels {
			for _, t := range l {
				level[t] = i
			}
		}
	}
	var pending []*applyOp
	byLevel := func(desc bool) []*Source {
		out := slices.Clone(sources)
		slices.SortStableFunc(out, func(a, b *Source) int {
			if desc {
				return level[b.t] - level[a.t]
			}
			return level[a.t] - level[b.t]
		})
		return out
	}
	for _, s := range byLevel(true) {
		if idx := s.Absent(); len(idx) > 0 {
			pending = append(pending, &applyOp{s: s, idx: idx})
		}
	}
	for _, s := range byLevel(false) {
		if idx := s.Present(); len(idx) > 0 {
			pending = append(pending, &applyOp{s: s, upsert: true, idx: idx})
		}
	}
	for {
		var next []*applyOp
		progress := false
		for _, op := range pending {
			err := op.run(ctx, dst, op.idx)
			if err == nil {
				progress = true
				continue
			}
			if isFatal(err) {
				return nil, err
			}
			if len(op.idx) == 1 {
				op.err = err
				next = append(next, op)
				continue
			}
			for _, i := range op.idx { // isolate the failing rows
				one := &applyOp{s: op.s, upsert: op.upsert, idx: []int{i}}
				if one.err = one.run(ctx, dst, one.idx); one.err == nil {
					progress = true
					continue
				}
				if isFatal(one.err) {
					return nil, one.err
				}
				next = append(next, one)
			}
		}
		pending = next
		if len(pending) == 0 || !progress {
			break
		}
	}
	return replaceStuck(ctx, dst, pending)
}

// replaceStuck replaces, table by table, the upserts still refused for a
// unique value (23505) all at once, and returns what remains.
func replaceStuck(ctx context.Context, dst pgx.Tx, pending []*applyOp) ([]KeyError, error) {
	stuck := map[*Source][]int{}
	var order []*Source
	for _, op := range pending {
		if op.upsert && sqlState(op.err) == "23505" {
			if stuck[op.s] == nil {
				order = append(order, op.s)
			}
			stuck[op.s] = append(stuck[op.s], op.idx...)
		}
	}
	replaced := map[*Source]bool{}
	for _, s := range order {
		if len(stuck[s]) < 2 {
			continue
		}
		err := inSavepoint(ctx, dst, func(tx pgx.Tx) error {
			_, err := s.Replace(ctx, tx, stuck[s])
			return err
		})
		if err == nil {
			replaced[s] = true
		} else if isFatal(err) {
			return nil, err
		}
	}
	var failed []KeyError
	for _, op := range pending {
		if op.upsert && replaced[op.s] && sqlState(op.err) == "23505" {
			continue
		}
		for _, i := range op.idx {
			failed = append(failed, KeyError{Source: op.s, Index: i, Err: op.err})
		}
	}
	return failed, nil
}

// applyOp is a delete or an upsert of some keys of one source.
type applyOp struct {
	s      *Source
	upsert bool
	idx    []int
	err    error // of its last attempt
}

func (op *applyOp) run(ctx context.Context, dst pgx.Tx, idx []int) error {
	return inSavepoint(ctx, dst, func(tx pgx.Tx) error {
		var err error
		if op.upsert {
			_, err = op.s.Upsert(ctx, tx, idx)
		} else {
			_, err = op.s.Delete(ctx, tx, idx)
		}
		return err
	})
}

// inSavepoint runs f in a savepoint of tx, released when f succeeds and
// rolled back when it fails.
func inSavepoint(ctx context.Context, tx pgx.Tx, f func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return fatalError{err}
	}
	if err := f(sp); err != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return fatalError{fmt.Errorf("%w (and rolling back its savepoint: %w)", err, rerr)}
		}
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		return fatalError{err}
	}
	return nil
}

// fatalError is a failure of the transaction itself, not of a row.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
