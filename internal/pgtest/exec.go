package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
)

// Exec runs sql on q and fails the test when it fails.
func Exec(t testing.TB, q pgshift.Querier, sql string, args ...any) {
	t.Helper()
	if _, err := q.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Dump returns every row of table (a quoted, possibly qualified name) in
// text form, sorted by that text, so two databases' tables compare as two
// slices; it fails the test when it cannot read them.
func Dump(t testing.TB, q pgshift.Querier, table string) []string {
	t.Helper()
	rows, err := q.Query(context.Background(), "SELECT r::text FROM "+table+" AS r ORDER BY 1")
	if err != nil {
		t.Fatalf("dump %s: %v", table, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("dump %s: %v", table, err)
	}
	return out
}
