package dualwrite_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
)

// A repository method is one Write around the statements of one change.
// Touch names the rows it changes: they go to the repair log in the same
// transaction, so the other side gets them even if it is down right now.
func ExampleWrite() {
	var oldPool, newPool *pgxpool.Pool // the two databases
	ctx := context.Background()
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: flags.Static(flags.StageDualWrite)})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	op := dualwrite.Op{Name: "accounts.rename"}
	n, err := dualwrite.Write(ctx, f, op, func(ctx context.Context, tx *dualwrite.Tx, prev *int64) (int64, error) {
		tx.Touch("accounts", 42)
		ct, err := tx.Exec(ctx, "UPDATE accounts SET name = $1 WHERE id = $2", "new name", 42)
		if err != nil {
			return 0, err
		}
		if prev != nil && ct.RowsAffected() != *prev {
			return 0, dualwrite.ErrDiverged // the other side lacks the row: repair copies it
		}
		return ct.RowsAffected(), nil
	})
	fmt.Println(n, err)
}

// Reads are served by the authoritative side; in shadow and live the other
// side answers too, off the caller's path, and the two are compared.
func ExampleRead() {
	var f *dualwrite.Facade // from dualwrite.New
	ctx := flags.WithUser(context.Background(), "user-123", nil)
	name, err := dualwrite.Read(ctx, f, dualwrite.Op{Name: "accounts.name"}, func(ctx context.Context, q pgshift.Querier) (string, error) {
		var name string
		err := q.QueryRow(ctx, "SELECT name FROM accounts WHERE id = $1", 42).Scan(&name)
		return name, err
	})
	fmt.Println(name, err)
}

// A table that users of several cohorts write at once moves under one global
// stage: mark its operations Global.
func ExampleOp_global() {
	var f *dualwrite.Facade // from dualwrite.New with Config.GlobalStages set
	ctx := context.Background()
	err := dualwrite.Exec(ctx, f, dualwrite.Op{Name: "settings.put", Global: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
		tx.Touch("settings", "theme")
		_, err := tx.Exec(ctx, "UPDATE settings SET value = $1 WHERE key = $2", "dark", "theme")
		return err
	})
	fmt.Println(err)
}
