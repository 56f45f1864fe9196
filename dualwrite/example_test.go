package dualwrite_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
)

// connect opens the two databases the way an application does; the tests
// export PGSHIFT_OLD_URL and PGSHIFT_NEW_URL for the examples (fresh
// databases with the reference domain: users, posts, events).
func connect(ctx context.Context) (oldPool, newPool *pgxpool.Pool) {
	oldPool, err := pgxpool.New(ctx, os.Getenv("PGSHIFT_OLD_URL"))
	if err != nil {
		log.Fatal(err)
	}
	newPool, err = pgxpool.New(ctx, os.Getenv("PGSHIFT_NEW_URL"))
	if err != nil {
		log.Fatal(err)
	}
	return oldPool, newPool
}

// A repository method is one Write around the statements of one change.
// Touch names the rows it changes: they go to the repair log in the same
// transaction, so the other side gets them even if it is down right now.
// On the other side prev holds the authoritative result, to check that side
// agrees (ErrDiverged leaves the row to the repair worker).
func ExampleWrite() {
	ctx := context.Background()
	oldPool, newPool := connect(ctx)
	defer oldPool.Close()
	defer newPool.Close()
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: flags.Static(flags.StageDualWrite)})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	id := "0190f3a4-0000-7000-8000-000000000001"
	for _, name := range []string{"Ada", "Ada Lovelace"} {
		n, err := dualwrite.Write(flags.WithUser(ctx, id, nil), f, dualwrite.Op{Name: "users.upsert"},
			func(ctx context.Context, tx *dualwrite.Tx, prev *int64) (int64, error) {
				tx.Touch("users", id)
				ct, err := tx.Exec(ctx, `INSERT INTO users (id, email, name) VALUES ($1, 'ada@example.com', $2)
					ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name`, id, name)
				if err != nil {
					return 0, err
				}
				if prev != nil && ct.RowsAffected() != *prev {
					return 0, dualwrite.ErrDiverged
				}
				return ct.RowsAffected(), nil
			})
		fmt.Println("rows written:", n, err)
	}
	// In dualwrite new is written just after the caller's answer, under the
	// row's lock; Wait lets that finish.
	f.Wait()
	for _, side := range []*pgxpool.Pool{oldPool, newPool} {
		var name string
		if err := side.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", id).Scan(&name); err != nil {
			log.Fatal(err)
		}
		fmt.Println(name)
	}
	// Output:
	// rows written: 1 <nil>
	// rows written: 1 <nil>
	// Ada Lovelace
	// Ada Lovelace
}

// An insert whose key the database makes (an identity column) learns it from
// RETURNING: Touch the row after the statement, and on the other side write
// the key the authoritative side made (prev). The facade keeps the COMMIT
// until the function returns, so the row's repair-log record commits with
// it, and new gets the event even if it is down right now.
func ExampleWrite_returning() {
	ctx := context.Background()
	oldPool, newPool := connect(ctx)
	defer oldPool.Close()
	defer newPool.Close()
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: flags.Static(flags.StageDualWrite)})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	user := "0190f3a4-0000-7000-8000-0000000000e1"
	ctx = flags.WithUser(ctx, user, nil)
	err = dualwrite.Exec(ctx, f, dualwrite.Op{Name: "users.create", NewRows: true, OneStatement: true},
		func(ctx context.Context, tx *dualwrite.Tx) error {
			tx.Touch("users", user)
			_, err := tx.Exec(ctx, "INSERT INTO users (id, email, name) VALUES ($1, 'hopper@example.com', 'Grace')", user)
			return err
		})
	if err != nil {
		log.Fatal(err)
	}
	id, err := dualwrite.Write(ctx, f, dualwrite.Op{Name: "events.create", OneStatement: true},
		func(ctx context.Context, tx *dualwrite.Tx, prev *int64) (int64, error) {
			var id int64
			var err error
			if prev != nil { // the other side: the key the authoritative side made
				err = tx.QueryRow(ctx, "INSERT INTO events (id, user_id, kind) VALUES ($1, $2, 'signup') RETURNING id",
					*prev, user).Scan(&id)
			} else {
				err = tx.QueryRow(ctx, "INSERT INTO events (user_id, kind) VALUES ($1, 'signup') RETURNING id",
					user).Scan(&id)
			}
			if err != nil {
				return 0, err
			}
			tx.Touch("events", id) // after the statement: the key came from RETURNING
			return id, nil
		})
	if err != nil {
		log.Fatal(err)
	}
	f.Wait()
	for _, side := range []*pgxpool.Pool{oldPool, newPool} {
		var n int
		if err := side.QueryRow(ctx, "SELECT count(*) FROM events WHERE id = $1 AND user_id = $2", id, user).Scan(&n); err != nil {
			log.Fatal(err)
		}
		fmt.Println("events with that id:", n)
	}
	// Output:
	// events with that id: 1
	// events with that id: 1
}

// Reads are served by the authoritative side; in shadow and live the other
// side answers too, off the caller's path, and the two are compared.
// WithOutcome tells which side served the call.
func ExampleRead() {
	ctx := context.Background()
	oldPool, newPool := connect(ctx)
	defer oldPool.Close()
	defer newPool.Close()
	id := "0190f3a4-0000-7000-8000-000000000002"
	for _, p := range []*pgxpool.Pool{oldPool, newPool} {
		if _, err := p.Exec(ctx, "INSERT INTO users (id, email, name) VALUES ($1, 'grace@example.com', 'Grace')", id); err != nil {
			log.Fatal(err)
		}
	}
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: flags.Static(flags.StageLive)})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	ctx, outcome := dualwrite.WithOutcome(flags.WithUser(ctx, id, nil))
	name, err := dualwrite.Read(ctx, f, dualwrite.Op{Name: "users.name"}, func(ctx context.Context, q pgshift.Querier) (string, error) {
		var name string
		err := q.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", id).Scan(&name)
		return name, err
	})
	f.Wait() // the shadow comparison runs in the background
	fmt.Println(name, err)
	fmt.Println("stage", outcome.Stage, "served by", outcome.Served, "mismatches", f.Stats().ShadowMismatches)
	// Output:
	// Grace <nil>
	// stage live served by new mismatches 0
}

// A table that users of several cohorts write at once has no single
// authority per row: its operations are marked Global and follow
// Config.GlobalStages, one stage for everyone.
func ExampleOp_global() {
	ctx := context.Background()
	oldPool, newPool := connect(ctx)
	defer oldPool.Close()
	defer newPool.Close()
	for _, p := range []*pgxpool.Pool{oldPool, newPool} {
		if _, err := p.Exec(ctx, "CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL)"); err != nil {
			log.Fatal(err)
		}
	}
	f, err := dualwrite.New(ctx, dualwrite.Config{
		Old: oldPool, New: newPool,
		Stages:       flags.Static(flags.StageLive),      // per user: this one is live
		GlobalStages: flags.Static(flags.StageDualWrite), // shared tables: still dual-writing from old
	})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	ctx, outcome := dualwrite.WithOutcome(flags.WithUser(ctx, "user-123", nil))
	err = dualwrite.Exec(ctx, f, dualwrite.Op{Name: "settings.put", Global: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
		tx.Touch("settings", "theme")
		_, err := tx.Exec(ctx, "INSERT INTO settings VALUES ('theme', 'dark') ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
		return err
	})
	fmt.Println(err, "stage", outcome.Stage, "authoritative", outcome.Served)
	// Output:
	// <nil> stage dualwrite authoritative old
}

// A Repairer of its own drains the repair logs from another process, for
// example an operator's job after the application stopped: each logged row
// is copied from the side that logged it, as it is now.
func ExampleRepairer_Drain() {
	ctx := context.Background()
	oldPool, newPool := connect(ctx)
	defer oldPool.Close()
	defer newPool.Close()
	// A write old committed and logged, that new never got.
	id := "0190f3a4-0000-7000-8000-000000000003"
	for _, sql := range []string{
		"INSERT INTO users (id, email, name) VALUES ($1, 'alan@example.com', 'Alan')",
		"INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', ARRAY[$1::text], 'users.create')",
	} {
		if _, err := oldPool.Exec(ctx, sql, id); err != nil {
			log.Fatal(err)
		}
	}

	r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: oldPool, New: newPool})
	if err != nil {
		log.Fatal(err)
	}
	rep, err := r.Drain(ctx)
	fmt.Printf("%+v %v\n", rep, err)
	var name string
	if err := newPool.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", id).Scan(&name); err != nil {
		log.Fatal(err)
	}
	fmt.Println("new has", name)
	// Output:
	// {OldToNew:1 NewToOld:0 Postponed:0} <nil>
	// new has Alan
}
