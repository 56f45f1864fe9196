package pgshiftdb

import (
	"context"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgshift/pgshift/internal/dbtxtest"
)

// The facade queues these statements in batches with Args; the generated
// methods are the reference for the argument order.
func TestArgsFollowTheGeneratedOrder(t *testing.T) {
	t.Parallel()
	q := New()
	ctx := context.Background()
	order := pgtype.Int8{Int64: 7, Valid: true}
	logRows := LogRowsParams{TableSchemas: []string{"s"}, TableNames: []string{"t"}, Op: "op", RoutingKey: "rk", Pull: true, Orders: []int64{7}, Keys: []string{`["k"]`}}
	for _, tc := range []struct {
		name string
		call func(DBTX)
		sql  string
		args []any
	}{
		{"LockRow", func(db DBTX) { _, _ = q.LockRow(ctx, db, 42) }, LockRowSQL, []any{int64(42)}},
		{"LockRows", func(db DBTX) { _, _ = q.LockRows(ctx, db, []int64{1, 2}) }, LockRowsSQL, []any{[]int64{1, 2}}},
		{"LogRow", func(db DBTX) {
			_, _ = q.LogRow(ctx, db, LogRowParams{"s", "t", []string{"k"}, "op", "rk", true, order})
		}, LogRowSQL, LogRowParams{"s", "t", []string{"k"}, "op", "rk", true, order}.Args()},
		{"LogRows", func(db DBTX) {
			_, _ = q.LogRows(ctx, db, logRows)
		}, LogRowsSQL, logRows.Args()},
		{"Fence", func(db DBTX) { _ = q.Fence(ctx, db, FenceParams{"rk", "new"}) }, FenceSQL, FenceParams{"rk", "new"}.Args()},
		{"FenceOld", func(db DBTX) { _ = q.FenceOld(ctx, db, "rk") }, FenceOldSQL, []any{"rk"}},
		{"LockAuthority", func(db DBTX) { _ = q.LockAuthority(ctx, db, "rk") }, LockAuthoritySQL, []any{"rk"}},
		{"KeyAuthority", func(db DBTX) { _, _ = q.KeyAuthority(ctx, db, "rk") }, KeyAuthoritySQL, []any{"rk"}},
		{"RecordAuthority", func(db DBTX) {
			_ = q.RecordAuthority(ctx, db, RecordAuthorityParams{"rk", "old", true})
		}, RecordAuthoritySQL, RecordAuthorityParams{"rk", "old", true}.Args()},
	} {
		var r dbtxtest.Recorder
		tc.call(&r)
		if r.SQL != tc.sql || !reflect.DeepEqual(r.Args, tc.args) {
			t.Errorf("%s: generated code sends %q %v, Args gives %q %v", tc.name, r.SQL, r.Args, tc.sql, tc.args)
		}
	}
}
