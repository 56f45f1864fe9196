package pgtest

import (
	"context"
	"testing"

	"github.com/pgshift/pgshift"
)

// Exec runs sql on q and fails the test when it fails.
func Exec(t testing.TB, q pgshift.Querier, sql string, args ...any) {
	t.Helper()
	if _, err := q.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
