package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/queries"
)

// asRole returns db's connection string with role as its user.
func asRole(t *testing.T, db *pgtest.DB, role string) string {
	t.Helper()
	u, err := url.Parse(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// TestCommandsRunWithoutSuperuser runs a migration with the roles the
// README's Security section describes, none of them a superuser: an
// operator role that owns the database and the application's tables runs
// install --capture, backfill, verify, repair and uninstall; the
// application's role, with DML on its tables and the grants on schema
// pgshift the README lists, runs the facade with capture.
func TestCommandsRunWithoutSuperuser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	op, app := "op_"+p.New.Name, "app_"+p.New.Name
	q := func(r string) string { return pgx.Identifier{r}.Sanitize() }
	var opURLs, appURLs []string
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, "CREATE ROLE "+q(op)+" LOGIN; CREATE ROLE "+q(app)+" LOGIN;"+
			"ALTER DATABASE "+q(db.Name)+" OWNER TO "+q(op)+"; ALTER SCHEMA public OWNER TO "+q(op))
		t.Cleanup(func() {
			_, _ = db.Pool.Exec(context.Background(), "ALTER SCHEMA public OWNER TO pg_database_owner; ALTER DATABASE "+q(db.Name)+" OWNER TO postgres;"+
				"DROP OWNED BY "+q(op)+", "+q(app)+" CASCADE; DROP ROLE "+q(op)+"; DROP ROLE "+q(app))
		})
		opURLs, appURLs = append(opURLs, asRole(t, db, op)), append(appURLs, asRole(t, db, app))
		conn, err := pgx.Connect(ctx, opURLs[len(opURLs)-1])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, queries.Schema+"; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+q(app)); err != nil {
			t.Fatal(err)
		}
		_ = conn.Close(ctx)
	}
	opArgs := []string{"--old", opURLs[0], "--new", opURLs[1]}
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errOut := pgshift(t, append(args, opArgs...)...)
		if code != exitOK || strings.Contains(errOut, "not recorded") || strings.Contains(errOut, "skipped") {
			t.Fatalf("%v as %s: code %d\nstdout: %s\nstderr: %s", args, op, code, out, errOut)
		}
		return out
	}
	mustRun("install", "--capture")
	for i, db := range []*pgtest.DB{p.Old, p.New} {
		conn, err := pgx.Connect(ctx, opURLs[i])
		if err != nil {
			t.Fatal(err)
		}
		// The grants the README gives the application's role.
		if _, err := conn.Exec(ctx, "GRANT USAGE ON SCHEMA pgshift TO "+q(app)+
			"; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgshift TO "+q(app)+
			"; GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgshift TO "+q(app)); err != nil {
			t.Fatalf("%s: %v", db.Name, err)
		}
		_ = conn.Close(ctx)
	}

	// The application writes through the facade with capture.
	var pools []*pgxpool.Pool
	for _, u := range appURLs {
		pool, err := pgxpool.New(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		pools = append(pools, pool)
	}
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: pools[0], New: pools[1], Stages: flags.Static(flags.StageDualWrite),
		Capture: true, OtherTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("the facade as %s: %v", app, err)
	}
	id := uuid.Must(uuid.NewV7())
	err = dualwrite.Exec(flags.WithUser(ctx, "1", nil), f, dualwrite.Op{Name: "signup"}, func(ctx context.Context, tx *dualwrite.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO users (id, email, name) VALUES ($1, 'a@example.com', 'A')", id)
		return err
	})
	if err != nil {
		t.Fatalf("a captured write as %s: %v", app, err)
	}
	f.Close()
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		var n int
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", id).Scan(&n); err != nil || n != 1 {
			t.Fatalf("%s: %d rows of the written user (err %v), want 1", db.Name, n, err)
		}
	}
	guaranteeAsRole(t, appURLs)

	// The operator's commands.
	pgtest.Exec(t, p.Old.Pool, "INSERT INTO users (id, email, name) VALUES ($1, 'b@example.com', 'B')", uuid.Must(uuid.NewV7()))
	mustRun("backfill")
	pgtest.Exec(t, p.New.Pool, "UPDATE users SET name = 'drifted' WHERE id = $1", id)
	pgtest.Exec(t, p.Old.Pool, "INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', ARRAY[$1::text], 'update')", id.String())
	mustRun("repair")
	if out := mustRun("verify"); !strings.Contains(out, "equal") {
		t.Fatalf("verify as %s after repair: %s", op, out)
	}
	mustRun("schema-diff")
	mustRun("status")
	mustRun("uninstall")
}

// guaranteeAsRole runs the guarantee as the application's role (urls: old's
// and new's, as that role): in dualwrite, writes in capture and in Touch
// mode while new refuses connections, then new back and the facade's own
// repair, as that role, copies what it missed: both sides hold every
// acknowledged write.
func guaranteeAsRole(t *testing.T, urls []string) {
	t.Helper()
	ctx := context.Background()
	oldPool, err := pgxpool.New(ctx, urls[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oldPool.Close)
	newPool, proxy := pgtest.ProxiedPool(t, urls[1], 0)
	var ids []uuid.UUID
	for _, capture := range []bool{true, false} {
		c := dualwrite.Config{Old: oldPool, New: newPool, Stages: flags.Static(flags.StageDualWrite),
			Capture: capture, OtherTimeout: 2 * time.Second}
		c.Repair.Interval = 50 * time.Millisecond
		f, err := dualwrite.New(ctx, c)
		if err != nil {
			t.Fatalf("the facade as the application's role (capture %t): %v", capture, err)
		}
		proxy.Down()
		for i := range 5 {
			id := uuid.Must(uuid.NewV7())
			err := dualwrite.Exec(flags.WithUser(ctx, "1", nil), f, dualwrite.Op{Name: "signup"}, func(ctx context.Context, tx *dualwrite.Tx) error {
				if !capture {
					tx.Touch("users", id)
				}
				_, err := tx.Exec(ctx, "INSERT INTO users (id, email, name) VALUES ($1, $2, 'down')", id, fmt.Sprintf("%s-%d@example.com", id, i))
				return err
			})
			if err != nil {
				t.Fatalf("write %d with new down (capture %t): %v", i, capture, err)
			}
			ids = append(ids, id)
		}
		proxy.Up()
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		for {
			b, err := f.Repairer().Backlog(dctx)
			if err == nil && b.Entries() == 0 {
				break
			}
			if dctx.Err() != nil {
				t.Fatalf("the repair log as the application's role did not drain in a minute (capture %t): %+v, %v", capture, b, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		f.Close()
	}
	for _, pool := range []*pgxpool.Pool{oldPool, newPool} {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM users WHERE id = ANY($1)", ids).Scan(&n); err != nil || n != len(ids) {
			t.Fatalf("%d of the %d acknowledged writes on a side (err %v)", n, len(ids), err)
		}
	}
}
