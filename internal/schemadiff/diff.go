package schemadiff

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// Beginner opens the transaction in which one side's catalog is read (its
// search_path is set for that transaction alone). *pgxpool.Pool, *pgx.Conn
// and pgx.Tx satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Options narrows a comparison. The zero value compares the whole schema.
type Options struct {
	// Tables, when not empty, limits the table-level comparison (tables,
	// columns, constraints, indexes) to these table names. Sequences and
	// enum types belong to the schema and are always compared.
	Tables []string
}

// ErrOwnSchema is returned when asked to compare pgshift's own schema.
var ErrOwnSchema = errors.New("schemadiff: the schema " + pgshiftdb.Schema + " holds pgshift's own tables and is never compared")

// ErrNoSchema is returned when the schema compared exists on neither side,
// which is a mistyped --schema far more often than two equal databases.
var ErrNoSchema = errors.New("schemadiff: the schema exists on neither old nor new")

// Diff compares the catalogs of schema ("public" when empty) on old and new
// and lists every difference, sorted by object and kind.
func Diff(ctx context.Context, oldDB, newDB Beginner, schema string, opts Options) (*Report, error) {
	if schema == "" {
		schema = "public"
	}
	if schema == pgshiftdb.Schema {
		return nil, ErrOwnSchema
	}
	o, err := load(ctx, oldDB, schema)
	if err != nil {
		return nil, fmt.Errorf("schemadiff: read schema %s on old: %w", quoteName(schema), err)
	}
	n, err := load(ctx, newDB, schema)
	if err != nil {
		return nil, fmt.Errorf("schemadiff: read schema %s on new: %w", quoteName(schema), err)
	}
	if !o.exists && !n.exists {
		return nil, fmt.Errorf("%w: %s (check --schema)", ErrNoSchema, quoteName(schema))
	}
	if len(opts.Tables) > 0 {
		keep := map[string]bool{}
		for _, t := range opts.Tables {
			keep[t] = true
		}
		o.keepTables(keep)
		n.keepTables(keep)
	}
	reprint(ctx, newDB, schema, o, n)
	return compare(schema, o, n), nil
}

// compare lists the differences between two snapshots of schema.
func compare(schema string, o, n *snapshot) *Report {
	r := &Report{Schema: schema, Differences: []Difference{}, Warnings: []Warning{}}
	add := func(kind Kind, object, oldValue, newValue string) {
		r.Differences = append(r.Differences, newDifference(kind, object, oldValue, newValue))
	}

	// Tables present on one side only; what belongs to them is not listed
	// again.
	common := map[string]bool{}
	for _, t := range o.tables {
		if slices.Contains(n.tables, t) {
			common[t] = true
		} else {
			add(MissingTable, quoteName(schema, t), tableSummary(o.columns, t), "")
		}
	}
	for _, t := range n.tables {
		if !common[t] {
			add(ExtraTable, quoteName(schema, t), "", tableSummary(n.columns, t))
		}
	}
	o.keepTables(common)
	n.keepTables(common)

	for _, m := range o.made {
		r.Warnings = append(r.Warnings, newWarning(schema, m))
	}
	slices.SortStableFunc(r.Warnings, func(a, b Warning) int { return strings.Compare(a.Object, b.Object) })
	compareColumns(schema, o.columns, n.columns, add)
	for _, kind := range []Kind{PrimaryKey, UniqueConstraint, ForeignKey, CheckConstraint, ExclusionConstraint, Index} {
		matchItems(schema, kind, o.items[kind], n.items[kind], true, add)
	}
	for _, kind := range []Kind{Sequence, Enum} {
		matchItems(schema, kind, o.items[kind], n.items[kind], false, add)
	}

	slices.SortStableFunc(r.Differences, func(a, b Difference) int {
		if a.Object != b.Object {
			if a.Object < b.Object {
				return -1
			}
			return 1
		}
		return 0
	})
	return r
}

// compareColumns compares the columns of the tables on both sides by name.
func compareColumns(schema string, oldCols, newCols []column, add func(kind Kind, object, oldValue, newValue string)) {
	type key struct{ table, name string }
	newByName := map[key]column{}
	for _, c := range newCols {
		newByName[key{c.Table, c.Name}] = c
	}
	seen := map[key]bool{}
	for _, oc := range oldCols {
		k := key{oc.Table, oc.Name}
		object := quoteName(schema, oc.Table, oc.Name)
		nc, ok := newByName[k]
		if !ok {
			add(MissingColumn, object, oc.Type, "")
			continue
		}
		seen[k] = true
		if oc.Type != nc.Type {
			add(ColumnType, object, oc.Type, nc.Type)
		}
		if oc.NotNull != nc.NotNull {
			add(Nullability, object, nullability(oc.NotNull), nullability(nc.NotNull))
		}
		if oc.canonDefault() != nc.canonDefault() {
			add(Default, object, orNone(oc.Default), orNone(nc.Default))
		}
	}
	for _, nc := range newCols {
		if !seen[key{nc.Table, nc.Name}] {
			add(ExtraColumn, quoteName(schema, nc.Table, nc.Name), "", nc.Type)
		}
	}
}

// tableSummary renders a table as its column list, "(id bigint, name text)".
func tableSummary(columns []column, table string) string {
	var parts []string
	for _, c := range columns {
		if c.Table == table {
			parts = append(parts, quoteName(c.Name)+" "+c.Type)
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func nullability(notNull bool) string {
	if notNull {
		return "NOT NULL"
	}
	return "NULL"
}

func orNone(def string) string {
	if def == "" {
		return "(none)"
	}
	return def
}

// matchItems compares objects of one kind. With byDef, an object on old
// whose definition an object on new of the same table has is equal whatever
// the names; the rest is paired by name. Without it, only names pair.
func matchItems(schema string, kind Kind, oldItems, newItems []item, byDef bool, add func(kind Kind, object, oldValue, newValue string)) {
	usedNew := make([]bool, len(newItems))
	var restOld []item
	for _, o := range oldItems {
		found := false
		for j, n := range newItems {
			if !usedNew[j] && o.Table == n.Table && o.canonDef() == n.canonDef() && (byDef || o.Name == n.Name) {
				usedNew[j], found = true, true
				break
			}
		}
		if !found {
			restOld = append(restOld, o)
		}
	}
	for _, o := range restOld {
		j := slices.IndexFunc(newItems, func(n item) bool { return n.Table == o.Table && n.Name == o.Name })
		if j >= 0 && !usedNew[j] {
			usedNew[j] = true
			add(kind, objectName(schema, kind, o), o.Def, newItems[j].Def)
		} else {
			add(kind, objectName(schema, kind, o), o.Def, "")
		}
	}
	for j, n := range newItems {
		if !usedNew[j] {
			add(kind, objectName(schema, kind, n), "", n.Def)
		}
	}
}

// objectName qualifies an item: constraints are named within their table,
// indexes, sequences and types within the schema.
func objectName(schema string, kind Kind, it item) string {
	if it.Table == "" || kind == Index {
		return quoteName(schema, it.Name)
	}
	return quoteName(schema, it.Table, it.Name)
}
