package dualwrite_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// A Touch of a table without a key fails the write in every stage that
// writes both sides, for every kind of write and wherever the function
// Touches it, with ErrKeylessTable naming the table, and nothing reaches
// either side: no row, no repair-log record. A table created keyless after
// the facade started is refused too; once keyed it is written.
func TestTouchOfKeylessTableReturnsErrorAndWritesNothing(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE audit (id int NOT NULL, what text)`)
	}
	b := setupOn(t, pair, flags.StageDualWrite)
	for _, db := range []*pgtest.DB{pair.Old, pair.New} { // unknown to the facade until Touched
		pgtest.Exec(t, db.Pool, `CREATE TABLE later (id int, what text)`)
	}
	ctx := flags.WithUser(context.Background(), "u1", nil)
	writes := []struct {
		name string
		op   dualwrite.Op
		// touchAfter Touches the row after the statement, as from RETURNING;
		// ignore drops the statement's error.
		touchAfter, ignore bool
	}{
		{name: "plain", op: dualwrite.Op{Name: "audit.add"}},
		{name: "one statement", op: dualwrite.Op{Name: "audit.add", OneStatement: true}},
		{name: "new rows", op: dualwrite.Op{Name: "audit.add", NewRows: true}},
		{name: "touched after the statement", op: dualwrite.Op{Name: "audit.add"}, touchAfter: true},
		{name: "statement's error ignored", op: dualwrite.Op{Name: "audit.add"}, ignore: true},
	}
	for _, table := range []string{"audit", "later"} {
		for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive, flags.StageRampdown} {
			b.stage.Set(stage)
			for _, w := range writes {
				err := dualwrite.Exec(ctx, b.facade, w.op, func(ctx context.Context, tx *dualwrite.Tx) error {
					if !w.touchAfter {
						tx.Touch(table, 1)
					}
					_, err := tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (1, 'x')", table))
					if w.touchAfter {
						tx.Touch(table, 1)
					}
					if w.ignore {
						return nil
					}
					return err
				})
				var ke *dualwrite.KeylessTableError
				if !errors.Is(err, dualwrite.ErrKeylessTable) || !errors.As(err, &ke) || ke.Table != table ||
					!strings.Contains(err.Error(), `ALTER TABLE "public"."`+table+`" ADD PRIMARY KEY`) {
					t.Fatalf("%s, %v, %s: err %v, want ErrKeylessTable naming the table and the ALTER", table, stage, w.name, err)
				}
			}
		}
		b.facade.Wait()
		for _, db := range []*pgtest.DB{pair.Old, pair.New} {
			var rows, logged int
			if err := db.Pool.QueryRow(context.Background(), fmt.Sprintf(`SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM pgshift.repair_log)`, table)).
				Scan(&rows, &logged); err != nil {
				t.Fatal(err)
			}
			if rows != 0 || logged != 0 {
				t.Fatalf("%s on %s: %d rows, %d repair-log records, want none", table, db.Name, rows, logged)
			}
		}
	}
	// Keyed while the application runs, the table is written at once.
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		pgtest.Exec(t, db.Pool, `ALTER TABLE audit ADD PRIMARY KEY (id)`)
	}
	b.stage.Set(flags.StageDualWrite)
	if err := dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "audit.add"}, func(ctx context.Context, tx *dualwrite.Tx) error {
		tx.Touch("audit", 1)
		_, err := tx.Exec(ctx, "INSERT INTO audit VALUES (1, 'x')")
		return err
	}); err != nil {
		t.Fatalf("write after keying audit: %v", err)
	}
}
