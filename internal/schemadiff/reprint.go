package schemadiff

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// reprintName names the temporary objects reprint makes on new.
const reprintName = "pgshift_reprint"

// reprint has new's server parse the definitions whose text differs between
// the sides, so that what two major versions print differently compares
// equal (PostgreSQL 17 prints "(now() AT TIME ZONE 'utc'::text)" where 13
// printed "timezone('utc'::text, now())", the same call), while a real
// difference stays one.
//
// For each table on both sides with such a definition, it copies the
// table's columns into a temporary table on new (CREATE TEMP TABLE ...
// (LIKE ...)) in a transaction it rolls back, applies each side's column
// default, generated expression, primary key, unique, check or exclusion
// constraint and index there, each in a savepoint, and reads back what new
// made of it: the expression trees without their print-only fields (see
// tree), or for constraints without an expression their text. That goes
// into the canon fields, which compare; reports show the original text. A
// definition new cannot apply (one that names what new lacks) keeps its own
// text, and so stays a difference; so does everything when the role may not
// make temporary tables on new. Foreign keys are not reparsed: a temporary
// table may not reference a permanent one, and their text has not changed
// between versions.
func reprint(ctx context.Context, newDB Beginner, schema string, o, n *snapshot) {
	work := pending(o, n)
	if len(work) == 0 {
		return
	}
	tx, err := newDB.Begin(ctx)
	if err != nil {
		return
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)"); err != nil {
		return
	}
	for i, table := range work.tables() {
		r := &reprinter{tx: tx, tmp: fmt.Sprintf("%s_%d", reprintName, i)}
		if !r.try(ctx, func() error {
			_, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (LIKE %s)", r.tmp, pgx.Identifier{schema, table}.Sanitize()))
			if err != nil {
				return err
			}
			return tx.QueryRow(ctx, "SELECT pg_catalog.format('%I.%I', $1::text, $2::text)", schema, table).Scan(&r.qualified)
		}) {
			continue
		}
		for _, pair := range work[table].columns {
			// Both with new's type, which the temporary copy has.
			for _, c := range pair {
				c.canon = r.columnDefault(ctx, c, pair[1].Type)
			}
		}
		for _, it := range work[table].constraints {
			it.canon = r.constraint(ctx, it.Def)
		}
		for _, it := range work[table].indexes {
			it.canon = r.index(ctx, it.Def)
		}
	}
}

// tableWork is what reprint has to print for one table.
type tableWork struct {
	// columns are pairs of the same column, old's and new's.
	columns              [][2]*column
	constraints, indexes []*item
}

type workList map[string]*tableWork

func (w workList) at(table string) *tableWork {
	if w[table] == nil {
		w[table] = &tableWork{}
	}
	return w[table]
}

func (w workList) tables() []string {
	var out []string
	for t := range w {
		out = append(out, t)
	}
	return out
}

// pending lists, per table on both sides, the column defaults that differ
// as text and the constraints and indexes whose text the other side's same
// table lacks, on both sides.
func pending(o, n *snapshot) workList {
	w := workList{}
	common := map[string]bool{}
	for _, t := range o.tables {
		common[t] = true
	}
	type key struct{ table, name string }
	newCols := map[key]*column{}
	for i := range n.columns {
		c := &n.columns[i]
		newCols[key{c.Table, c.Name}] = c
	}
	for i := range o.columns {
		oc := &o.columns[i]
		nc := newCols[key{oc.Table, oc.Name}]
		if nc == nil || oc.Default == nc.Default || oc.Default == "" || nc.Default == "" {
			continue
		}
		tw := w.at(oc.Table)
		tw.columns = append(tw.columns, [2]*column{oc, nc})
	}
	for _, kind := range []Kind{PrimaryKey, UniqueConstraint, CheckConstraint, ExclusionConstraint, Index} {
		for _, side := range [][2][]item{{o.items[kind], n.items[kind]}, {n.items[kind], o.items[kind]}} {
			mine, theirs := side[0], side[1]
			for i := range mine {
				it := &mine[i]
				if it.Table == "" || !common[it.Table] || hasDef(theirs, it.Table, it.Def) {
					continue
				}
				tw := w.at(it.Table)
				if kind == Index {
					tw.indexes = append(tw.indexes, it)
				} else {
					tw.constraints = append(tw.constraints, it)
				}
			}
		}
	}
	return w
}

func hasDef(items []item, table, def string) bool {
	for _, it := range items {
		if it.Table == table && it.Def == def {
			return true
		}
	}
	return false
}

// reprinter prints definitions on one temporary copy of a table.
type reprinter struct {
	tx  pgx.Tx
	tmp string
	// qualified is the table's name as definitions print it.
	qualified string
}

// try runs fn in a savepoint: kept when fn succeeds, undone when it fails.
func (r *reprinter) try(ctx context.Context, fn func() error) bool {
	if _, err := r.tx.Exec(ctx, "SAVEPOINT "+reprintName); err != nil {
		return false
	}
	if err := fn(); err != nil {
		_, _ = r.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+reprintName)
		return false
	}
	_, _ = r.tx.Exec(ctx, "RELEASE SAVEPOINT "+reprintName)
	return true
}

// print applies ddl to the temporary table, reads back what query returns
// and undoes the ddl; "" when either fails.
func (r *reprinter) print(ctx context.Context, ddl, query string, args ...any) string {
	var out string
	_ = r.try(ctx, func() error {
		// ddl holds definitions as a catalog printed them: sent through
		// the extended protocol (pgx would send a statement without
		// parameters as a simple query, which may hold several), it is one
		// statement or an error.
		if _, err := r.tx.Conn().PgConn().ExecParams(ctx, ddl, nil, nil, nil, nil).Close(); err != nil {
			return err
		}
		if err := r.tx.QueryRow(ctx, query, args...).Scan(&out); err != nil {
			return err
		}
		// Undo the ddl whatever happened: the next one starts afresh.
		return errUndo
	})
	return out
}

var errUndo = errors.New("schemadiff: undo")

const generatedPrefix, generatedSuffix = "GENERATED ALWAYS AS (", ") STORED"

// columnDefault prints c's default (or generated expression) on new, for
// a column of type typ.
func (r *reprinter) columnDefault(ctx context.Context, c *column, typ string) string {
	tmp := "pg_temp." + r.tmp
	if strings.HasPrefix(c.Default, generatedPrefix) && strings.HasSuffix(c.Default, generatedSuffix) {
		expr := strings.TrimSuffix(strings.TrimPrefix(c.Default, generatedPrefix), generatedSuffix)
		out := r.print(ctx,
			fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s GENERATED ALWAYS AS (%s) STORED", tmp, reprintName, typ, expr),
			defaultTreeSQL, tmp, reprintName)
		if out == "" {
			return ""
		}
		return "generated " + out
	}
	if strings.HasPrefix(c.Default, "GENERATED ") {
		return "" // identity: nothing printed by an expression
	}
	return r.print(ctx,
		fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", tmp, pgx.Identifier{c.Name}.Sanitize(), c.Default),
		defaultTreeSQL, tmp, c.Name)
}

// constraint prints a constraint definition (pg_get_constraintdef's) on new.
func (r *reprinter) constraint(ctx context.Context, def string) string {
	tmp := "pg_temp." + r.tmp
	return r.print(ctx,
		fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", tmp, reprintName, def),
		`SELECT CASE WHEN contype = 'c' THEN `+tree("conbin")+` ELSE pg_catalog.pg_get_constraintdef(oid, true) END
		 FROM pg_catalog.pg_constraint WHERE conrelid = $1::pg_catalog.regclass AND conname = $2`, tmp, reprintName)
}

// index prints an index definition (as indexesSQL renders it: without the
// index's name) on new, as what the index is made of: access method,
// uniqueness, columns, operator classes, collations, options, and the
// expression and predicate trees (see tree).
func (r *reprinter) index(ctx context.Context, def string) string {
	var rest string
	for _, on := range []string{" ON ONLY " + r.qualified + " ", " ON " + r.qualified + " "} {
		if _, after, ok := strings.Cut(def, "INDEX"+on); ok {
			rest = after
			break
		}
	}
	if rest == "" {
		return ""
	}
	head, _, _ := strings.Cut(def, "INDEX ON ")
	return r.print(ctx,
		fmt.Sprintf("%sINDEX %s ON pg_temp.%s %s", head, reprintName, r.tmp, rest),
		`SELECT pg_catalog.concat_ws(' | ', am.amname, x.indisunique, x.indnkeyatts, x.indkey::text, x.indclass::text,
		        x.indcollation::text, x.indoption::text, `+tree("x.indexprs")+`, `+tree("x.indpred")+`)
		 FROM pg_catalog.pg_index x
		 JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
		 JOIN pg_catalog.pg_am am ON am.oid = c.relam
		 WHERE c.relname = $1 AND c.relnamespace = pg_catalog.pg_my_temp_schema()`, reprintName)
}

// tree is SQL for the text of the expression tree in column col (a
// pg_node_tree) without what only says how to print it: where in the
// statement it was written (location) and whether a call was written as a
// function or in SQL syntax (funcformat and the other *format fields:
// "timezone('utc', now())" and "now() AT TIME ZONE 'utc'" are one call).
// Trees are compared only on one server, where the same call names the same
// function and type OIDs.
func tree(col string) string {
	return `coalesce(pg_catalog.regexp_replace(` + col + `::text, ' :(location|[a-z_]*format) -?[0-9]+', '', 'g'), '')`
}

// defaultTreeSQL reads the tree of the default of column $2 of table $1.
var defaultTreeSQL = `SELECT ` + tree("d.adbin") + ` FROM pg_catalog.pg_attrdef d
	JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
	WHERE d.adrelid = $1::pg_catalog.regclass AND a.attname = $2`
