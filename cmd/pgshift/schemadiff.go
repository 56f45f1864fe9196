package main

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift/internal/schemadiff"
)

func init() {
	register(&command{
		name:    "schema-diff",
		summary: "list every schema difference between old and new (tables, columns, keys, indexes, sequences, enums)",
		usage: `Usage: pgshift schema-diff [flags]

Compares the catalogs of old and new for one schema: tables, columns (type,
nullability, default), primary, unique, foreign key and check constraints,
indexes, sequences (not their values) and enum types. Run it before backfill
and before moving writes: a row that fits one side must fit the other.
pgshift's own schema is never compared.

It also warns about columns whose values the database makes when a write
does not pass one (defaults such as now() or gen_random_uuid(), identity and
serial columns, BEFORE triggers): each side makes its own, so a write
function must pass those values. Warnings do not change the exit status.

Exit status 0 when the schemas match, 1 when they differ.

Examples:
  pgshift schema-diff --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift schema-diff --schema billing --table invoices --json
`,
		tables: true,
		run:    runSchemaDiff,
	})
}

func runSchemaDiff(ctx context.Context, e *env, args []string) int {
	com, oldPool, newPool, code, ok := catalogCommand(ctx, e, "schema-diff", args, nil)
	if !ok {
		return code
	}
	defer oldPool.Close()
	defer newPool.Close()
	c := commands["schema-diff"]
	rep, err := schemadiff.Diff(ctx, oldPool, newPool, com.schema, schemadiff.Options{Tables: com.tables})
	if err != nil {
		return fail(e, c.name, err)
	}
	code = exitOK
	if !rep.Equal() {
		code = exitDifferences
	}
	if com.json {
		out := struct {
			Equal bool `json:"equal"`
			*schemadiff.Report
		}{rep.Equal(), rep}
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e, c.name, err)
		}
		return code
	}
	if err := rep.Write(e.stdout); err != nil {
		return fail(e, c.name, err)
	}
	if rep.Equal() {
		fmt.Fprintf(e.stdout, "schema %s: old and new match\n", com.schema)
	}
	return code
}
