package dualwrite_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// keyCase is a table keyed by one type (or a composite key) and the Go
// values an application would Touch one of its rows with.
type keyCase struct {
	name    string
	keyDDL  string // the key columns' definitions
	keyCols string // the key columns, comma-separated
	key     []any  // Go values, in key column order
}

var keyCases = []keyCase{
	{"bytea", "k bytea", "k", []any{[]byte{0xde, 0xad, 0x00, 0xbe, 0xef}}},
	{"timestamptz", "k timestamptz", "k", []any{time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("IST", 5*3600+1800))}},
	{"timestamp", "k timestamp", "k", []any{time.Date(2024, 2, 29, 23, 59, 58, 120000000, time.UTC)}},
	{"numeric", "k numeric(12,2)", "k", []any{func() pgtype.Numeric {
		var n pgtype.Numeric
		if err := n.Scan("12345.50"); err != nil {
			panic(err)
		}
		return n
	}()}},
	{"bool", "k bool", "k", []any{true}},
	{"float8", "k float8", "k", []any{1234567.125}},
	{"uuid", "k uuid", "k", []any{uuid.MustParse("0190f3a4-1b2c-7d3e-8f40-112233445566")}},
	{"bigint", "k bigint", "k", []any{int64(-42)}},
	{"composite", "k1 text, k2 int, k3 date", "k1, k2, k3", []any{"tenant a", 7, time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)}},
}

// TestRepairByKeyType writes a row through the facade, Touched with the Go
// values of its key, while the other side rejects the write; the repair
// worker must then copy it over, which only works when the key text the
// facade logged casts back to the key's type and names the same row.
func TestRepairByKeyType(t *testing.T) {
	t.Parallel()
	for _, kc := range keyCases {
		t.Run(kc.name, func(t *testing.T) {
			t.Parallel()
			pair := pgtest.NewPair(t, pgtest.Domain)
			ddl := fmt.Sprintf("CREATE TABLE keyed (%s, v text NOT NULL, PRIMARY KEY (%s))", kc.keyDDL, kc.keyCols)
			pgtest.Exec(t, pair.Old.Pool, ddl)
			pgtest.Exec(t, pair.New.Pool, ddl)
			// New refuses the write until the constraint goes.
			pgtest.Exec(t, pair.New.Pool, "ALTER TABLE keyed ADD CONSTRAINT not_yet CHECK (v <> 'first')")
			b := setupOn(t, pair, flags.StageDualWrite, func(c *dualwrite.Config) { c.RepairDisabled = true })

			placeholders := ""
			for i := range kc.key {
				placeholders += fmt.Sprintf("$%d, ", i+1)
			}
			insert := fmt.Sprintf("INSERT INTO keyed (%s, v) VALUES (%s'first')", kc.keyCols, placeholders)
			err := dualwrite.Exec(userCtx("k"), b.facade, dualwrite.Op{Name: "keyed.insert"}, func(ctx context.Context, tx *dualwrite.Tx) error {
				tx.Touch("keyed", kc.key...)
				_, err := tx.Exec(ctx, insert, kc.key...)
				return err
			})
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			b.facade.Wait()
			if n := count(t, pair.New.Pool, "keyed", "true"); n != 0 {
				t.Fatalf("new took the write it should have refused (%d rows)", n)
			}

			pgtest.Exec(t, pair.New.Pool, "ALTER TABLE keyed DROP CONSTRAINT not_yet")
			rep, err := b.facade.Repairer().Drain(context.Background())
			if err != nil {
				t.Fatalf("drain: %v", err)
			}
			if rep.Postponed != 0 {
				t.Fatalf("drain postponed %d entries: %+v", rep.Postponed, rep)
			}
			o, n := pgtest.Dump(t, pair.Old.Pool, "keyed"), pgtest.Dump(t, pair.New.Pool, "keyed")
			if len(o) != 1 || fmt.Sprint(o) != fmt.Sprint(n) {
				t.Fatalf("after repair: old %v, new %v", o, n)
			}
		})
	}
}
