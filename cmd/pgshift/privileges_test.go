package main

import (
	"context"
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
