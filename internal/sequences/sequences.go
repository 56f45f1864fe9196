// Package sequences moves the sequences of the new database past the values
// the old database has handed out, so that once writes move to new, the ids
// new makes never collide with ids made on old.
//
// Every sequence of the schema on old is matched by name with the sequence of
// the same schema and name on new; identity and serial sequences are ordinary
// sequences in the catalog and are included. For each one the target is
//
//	max(highest value old has handed out, highest value in the column on new
//	    that owns the sequence) + Gap
//
// (for a descending sequence: the minimum, minus Gap). The owning column's
// values count because rows copied to new with explicit ids (backfill, dual
// writes) may run ahead of old's sequence. The gap leaves room for the ids old
// still hands out between Sync and the moment the last cohort's writes move
// (users still on old take ids from old's sequence meanwhile); make it larger
// than the ids old hands out in that time.
//
// Guarantees: a sequence is never moved backwards: when new is already at or
// past the target it is left alone, so running Sync twice moves nothing the
// second time (unless old moved on). The comparison with new's current value
// and the setval happen in one statement. Current values are read, never
// consumed: Sync does not call nextval on either side. Sequences that exist on
// new only are left alone; a sequence of old that new lacks is an error
// (ErrMissingOnNew) after every other sequence has been synced.
//
// Sync is meant to run while new hands out no ids of its own, before writes
// move; run it again right before they do.
package sequences

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
)

// DefaultGap is the gap Options.Gap defaults to. It is large on purpose:
// while cohorts are split, users still on old keep taking ids from old's
// sequence and users already live take them from new's, and the two ranges
// must not meet before everyone is live (the demo's walkthrough met a gap of
// 1,000 within seconds). A smallint sequence needs a smaller gap.
const DefaultGap = 1_000_000

// Options tunes Sync. The zero value is ready to use.
type Options struct {
	// Gap is how far past old's highest value new's sequence is set.
	// Zero means DefaultGap; it must not be negative.
	Gap int64
	// Tables, when set, limits the work to the sequences owned by a column
	// of these tables (serial and identity columns); sequences no column
	// owns are then left out. Empty means every sequence of the schema.
	Tables []string
}

// ErrMissingOnNew is wrapped by the error for a sequence of old that new does
// not have.
var ErrMissingOnNew = errors.New("sequence missing on new")

// Moved is what Sync did to one sequence, or what Status would do.
type Moved struct {
	// Sequence is the sequence's qualified name, quoted where needed.
	Sequence string `json:"sequence"`
	// OwnedBy is the table column that owns the sequence on new (serial and
	// identity columns), empty when none does.
	OwnedBy string `json:"owned_by,omitempty"`
	// Old is the highest value old has handed out (its start minus one
	// increment when it has handed out none).
	Old int64 `json:"old"`
	// OwnedMax is the highest value in the owning column on new, nil when
	// the sequence has no integer owning column or the column holds no value.
	OwnedMax *int64 `json:"owned_max,omitempty"`
	// NewBefore and NewAfter are the highest value new has handed out (or
	// would, as far as nextval is concerned) before and after Sync. Status
	// reports the planned value as NewAfter.
	NewBefore int64 `json:"new_before"`
	NewAfter  int64 `json:"new_after"`
	// Moved tells whether new's sequence was (or, for Status, would be) set.
	Moved bool `json:"moved"`
}

// Sync moves every sequence of schema ("public" when empty) on new past old's
// value and reports each one, in name order. With ErrMissingOnNew the report
// still lists the sequences that were synced.
func Sync(ctx context.Context, oldDB, newDB pgshift.Querier, schema string, opts Options) ([]Moved, error) {
	return run(ctx, oldDB, newDB, schema, opts, true)
}

// Status reports, for every sequence of schema on old, both sides' values and
// what Sync would do, without changing anything.
func Status(ctx context.Context, oldDB, newDB pgshift.Querier, schema string, opts Options) ([]Moved, error) {
	return run(ctx, oldDB, newDB, schema, opts, false)
}

// sequence is one sequence as the catalog describes it.
type sequence struct {
	Name      string // relname
	Qualified string // quoted for display
	Increment int64
	Min, Max  int64
	// The integer column that owns the sequence, all empty when there is
	// none: its schema, table and name, and how it is displayed.
	OwnerSchema, OwnerTable, OwnerColumn, OwnedBy string
}

const sequencesSQL = `
SELECT c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       s.seqincrement, s.seqmin, s.seqmax,
       coalesce(tn.nspname, ''), coalesce(t.relname, ''), coalesce(a.attname, ''),
       coalesce(quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.' || quote_ident(a.attname), '')
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
LEFT JOIN pg_class t ON t.oid = a.attrelid
LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
WHERE n.nspname = $1
ORDER BY c.relname`

func list(ctx context.Context, q pgshift.Querier, schema string) ([]sequence, error) {
	rows, err := q.Query(ctx, sequencesSQL, schema)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[sequence])
}

func run(ctx context.Context, oldDB, newDB pgshift.Querier, schema string, opts Options, apply bool) ([]Moved, error) {
	if schema == "" {
		schema = "public"
	}
	gap := opts.Gap
	switch {
	case gap < 0:
		return nil, fmt.Errorf("sequences: gap %d is negative", gap)
	case gap == 0:
		gap = DefaultGap
	}
	oldSeqs, err := list(ctx, oldDB, schema)
	if err != nil {
		return nil, fmt.Errorf("sequences: list sequences of schema %s on old: %w", schema, err)
	}
	newSeqs, err := list(ctx, newDB, schema)
	if err != nil {
		return nil, fmt.Errorf("sequences: list sequences of schema %s on new: %w", schema, err)
	}
	onNew := map[string]sequence{}
	for _, s := range newSeqs {
		onNew[s.Name] = s
	}
	var out []Moved
	var errs []error
	for _, oseq := range oldSeqs {
		if len(opts.Tables) > 0 && !slices.Contains(opts.Tables, oseq.OwnerTable) {
			continue
		}
		nseq, ok := onNew[oseq.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("sequences: %s: %w; create it on new (schema-diff lists it) and run again", oseq.Qualified, ErrMissingOnNew))
			continue
		}
		m, err := syncOne(ctx, oldDB, newDB, schema, oseq, nseq, gap, apply)
		if err != nil {
			return out, fmt.Errorf("sequences: %s: %w", oseq.Qualified, err)
		}
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

// syncOne plans, and with apply performs, the move of one sequence.
func syncOne(ctx context.Context, oldDB, newDB pgshift.Querier, schema string, oseq, nseq sequence, gap int64, apply bool) (Moved, error) {
	ident := pgx.Identifier{schema, oseq.Name}.Sanitize()
	m := Moved{Sequence: oseq.Qualified}
	var err error
	if m.Old, err = handedOut(ctx, oldDB, ident, oseq.Increment); err != nil {
		return m, fmt.Errorf("read on old: %w", err)
	}
	if m.NewBefore, err = handedOut(ctx, newDB, ident, nseq.Increment); err != nil {
		return m, fmt.Errorf("read on new: %w", err)
	}
	up := nseq.Increment > 0
	beyond := func(a, b int64) bool { return (up && a > b) || (!up && a < b) }

	floor := m.Old
	if nseq.OwnerColumn != "" {
		m.OwnedBy = nseq.OwnedBy
		agg := "max"
		if !up {
			agg = "min"
		}
		sql := fmt.Sprintf("SELECT %s(%s)::bigint FROM %s", agg,
			pgx.Identifier{nseq.OwnerColumn}.Sanitize(), pgx.Identifier{nseq.OwnerSchema, nseq.OwnerTable}.Sanitize())
		if err := newDB.QueryRow(ctx, sql).Scan(&m.OwnedMax); err != nil {
			return m, fmt.Errorf("read the owning column %s on new: %w", m.OwnedBy, err)
		}
		if m.OwnedMax != nil && beyond(*m.OwnedMax, floor) {
			floor = *m.OwnedMax
		}
	}

	target, err := past(floor, gap, up, nseq)
	if err != nil {
		return m, err
	}
	m.NewAfter = m.NewBefore
	if !beyond(target, m.NewBefore) {
		return m, nil
	}
	m.Moved = true
	if !apply {
		m.NewAfter = target
		return m, nil
	}
	// Set only if new is still short of the target, in one statement, so a
	// value new handed out meanwhile is never undercut.
	cmp := "<"
	if !up {
		cmp = ">"
	}
	sql := fmt.Sprintf(`SELECT setval($1::regclass, $2, true) FROM %s
WHERE (CASE WHEN is_called THEN last_value ELSE last_value - $3 END) %s $2`, ident, cmp)
	if _, err := newDB.Exec(ctx, sql, ident, target, nseq.Increment); err != nil {
		return m, fmt.Errorf("setval to %d on new: %w", target, err)
	}
	if m.NewAfter, err = handedOut(ctx, newDB, ident, nseq.Increment); err != nil {
		return m, fmt.Errorf("read on new after setval: %w", err)
	}
	return m, nil
}

// past is floor moved by gap in the sequence's direction, within its bounds.
func past(floor, gap int64, up bool, s sequence) (int64, error) {
	if up {
		if floor > s.Max-gap {
			return 0, fmt.Errorf("%d + gap %d is past the maximum %d on new; use a smaller gap or ALTER SEQUENCE ... MAXVALUE", floor, gap, s.Max)
		}
		return floor + gap, nil
	}
	if floor < s.Min+gap {
		return 0, fmt.Errorf("%d - gap %d is below the minimum %d on new; use a smaller gap or ALTER SEQUENCE ... MINVALUE", floor, gap, s.Min)
	}
	return floor - gap, nil
}

// handedOut is the last value the sequence has handed out: last_value once
// nextval (or setval with is_called) has run, else one increment before it.
func handedOut(ctx context.Context, q pgshift.Querier, ident string, increment int64) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, "SELECT CASE WHEN is_called THEN last_value ELSE last_value - $1 END FROM "+ident, increment).Scan(&v)
	return v, err
}
