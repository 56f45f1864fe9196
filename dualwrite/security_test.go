package dualwrite_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// plantedTrap is what plantTraps leaves in schema public of one database:
// the role that planted it, and the table its functions write to when they
// run.
type plantedTrap struct {
	role string
	db   *pgtest.DB
}

// plantTraps plays an unprivileged role, mallory, on db after
// GRANT CREATE ON SCHEMA public TO PUBLIC (PostgreSQL's default before 15,
// kept by pg_upgrade): mallory creates in public an exact =(text[], text[])
// (pg_catalog has only =(anyarray, anyarray), so in a search path with public
// it wins), an exact =(oid, integer), and exact unnest, power and
// make_interval functions, as
// pg_catalog's are polymorphic or take other types. Each of them, once run,
// records its name in public.trap_ran and tries to make mallory a
// superuser, which succeeds when a superuser session runs it.
func plantTraps(t *testing.T, db *pgtest.DB) *plantedTrap {
	t.Helper()
	role, conn := newRole(t, db)
	ctx := context.Background()
	pgtest.Exec(t, db.Pool, "GRANT CREATE ON SCHEMA public TO PUBLIC")
	escalate := func(what string) string {
		return fmt.Sprintf(`INSERT INTO public.trap_ran VALUES ('%s');
        BEGIN EXECUTE 'ALTER ROLE %s SUPERUSER'; EXCEPTION WHEN insufficient_privilege THEN NULL; END;`,
			what, pgx.Identifier{role}.Sanitize())
	}
	for _, sql := range []string{
		`CREATE TABLE public.trap_ran (what text)`,
		`GRANT INSERT ON public.trap_ran TO PUBLIC`,
		`CREATE FUNCTION public.trap_eq(a text[], b text[]) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN ` + escalate("=(text[], text[])") + `
        RETURN pg_catalog.array_eq(a, b); END $$`,
		`CREATE OPERATOR public.= (LEFTARG = text[], RIGHTARG = text[], FUNCTION = public.trap_eq)`,
		`CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
        BEGIN ` + escalate("unnest(text[])") + `
        RETURN QUERY SELECT pg_catalog.unnest(a); END $$`,
		`CREATE FUNCTION public.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
        BEGIN ` + escalate("unnest(bigint[])") + `
        RETURN QUERY SELECT pg_catalog.unnest(a); END $$`,
		`CREATE FUNCTION public.power(a integer, b integer) RETURNS float8 LANGUAGE plpgsql AS $$
        BEGIN ` + escalate("power(integer, integer)") + `
        RETURN pg_catalog.power(a::float8, b::float8); END $$`,
		// pg_catalog has no =(oid, integer): an oid column against a number
		// literal, in catalog queries, takes this one.
		`CREATE FUNCTION public.trap_oideq(a oid, b integer) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN ` + escalate("=(oid, integer)") + `
        RETURN a OPERATOR(pg_catalog.=) b::oid; END $$`,
		`CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = integer, FUNCTION = public.trap_oideq)`,
		`CREATE FUNCTION public.make_interval(secs float8) RETURNS interval LANGUAGE plpgsql AS $$
        BEGIN ` + escalate("make_interval(secs float8)") + `
        RETURN pg_catalog.make_interval(secs => secs); END $$`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("plant as %s: %v\n%s", role, err, sql)
		}
	}
	// The traps are armed: the application's own session finds them.
	var ran string
	if err := db.Pool.QueryRow(ctx, `SELECT ARRAY['a'] = ARRAY['b']`).Scan(new(bool)); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(what, ', ') FROM public.trap_ran`).Scan(&ran); err != nil || ran != "=(text[], text[])" {
		t.Fatalf("the planted operator did not run in an unqualified comparison (ran %q, err %v): the test proves nothing", ran, err)
	}
	pgtest.Exec(t, db.Pool, "TRUNCATE public.trap_ran")
	pgtest.Exec(t, db.Pool, "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" NOSUPERUSER")
	return &plantedTrap{role: role, db: db}
}

// newRole creates an unprivileged login role of the test's own (roles are
// shared by the server's databases) and returns its name and a connection
// to db as that role. The role and what it owns in db go when the test ends.
func newRole(t *testing.T, db *pgtest.DB) (string, *pgx.Conn) {
	t.Helper()
	role := "mallory_" + db.Name
	ctx := context.Background()
	pgtest.Exec(t, db.Pool, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN")
	t.Cleanup(func() {
		// Before the database is dropped (cleanups run last first).
		_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize()+" CASCADE")
		_, _ = db.Pool.Exec(context.Background(), "DROP ROLE "+pgx.Identifier{role}.Sanitize())
	})
	// The role logs in (the test servers trust loopback connections).
	cfg, err := pgx.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = role
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return role, conn
}

// plantSchema plays a role allowed to CREATE in the database that creates
// schema pgshift and a repair_log in it, with a trigger that makes the
// role a superuser when a superuser writes the log.
func plantSchema(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	ctx := context.Background()
	role, conn := newRole(t, db)
	pgtest.Exec(t, db.Pool, "GRANT CREATE ON DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" TO "+pgx.Identifier{role}.Sanitize())
	for _, sql := range []string{
		`CREATE SCHEMA pgshift`,
		// The shape pgshift gives it, so that an install that adopts it
		// goes through.
		`CREATE TABLE pgshift.repair_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		table_schema text NOT NULL, table_name text NOT NULL, key text[] NOT NULL, op text NOT NULL,
		routing_key text NOT NULL DEFAULT '', created_at timestamptz NOT NULL DEFAULT now(),
		attempts integer NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT now(),
		last_error text NOT NULL DEFAULT '', pull boolean NOT NULL DEFAULT false, k_xid bigint)`,
		`CREATE FUNCTION pgshift.grab() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN EXECUTE 'ALTER ROLE ` + pgx.Identifier{role}.Sanitize() + ` SUPERUSER'; RETURN NULL; END $$`,
		`CREATE TRIGGER grab AFTER INSERT ON pgshift.repair_log FOR EACH STATEMENT EXECUTE FUNCTION pgshift.grab()`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("plant as %s: %v\n%s", role, err, sql)
		}
	}
	return role
}

// TestInstallRefusesSchemaAnotherRoleOwns: a role allowed to CREATE in the
// database created schema pgshift and a repair log with a trigger before
// pgshift was installed. Install, as a superuser, refuses it with an error
// naming the owner, and creates nothing in it.
func TestInstallRefusesSchemaAnotherRoleOwns(t *testing.T) {
	t.Parallel()
	oldSrv, _ := pgtest.Servers(t)
	db := pgtest.NewDB(t, oldSrv, pgtest.Empty)
	role := plantSchema(t, db)
	for _, install := range []func(context.Context, pgshift.Querier) error{
		dualwrite.Install,
		func(ctx context.Context, q pgshift.Querier) error {
			_, err := dualwrite.InstallCapture(ctx, q, "", nil)
			return err
		},
	} {
		err := install(context.Background(), db.Pool)
		if err == nil || !strings.Contains(err.Error(), "schema pgshift owned by role "+role) ||
			!strings.Contains(err.Error(), "trigger grab on pgshift.repair_log") {
			t.Fatalf("install: err %v, want a refusal naming schema pgshift, its owner %s and the trigger", err, role)
		}
	}
	var created int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_class
		WHERE relnamespace = 'pgshift'::regnamespace AND relowner <> $1::text::regrole`, role).Scan(&created); err != nil || created != 0 {
		t.Fatalf("install created %d relations in the planted schema (err %v), want none", created, err)
	}
}

// TestFacadeRefusesSchemaAnotherRoleOwns: on a database where pgshift's
// repair log belongs to another role that put a trigger on it (an install
// that adopted it), the facade does not start, and says why.
func TestFacadeRefusesSchemaAnotherRoleOwns(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	role, conn := newRole(t, pair.Old)
	pgtest.Exec(t, pair.Old.Pool, "ALTER TABLE pgshift.repair_log OWNER TO "+pgx.Identifier{role}.Sanitize())
	pgtest.Exec(t, pair.Old.Pool, "GRANT CREATE ON SCHEMA public TO "+pgx.Identifier{role}.Sanitize()+"; GRANT USAGE ON SCHEMA pgshift TO "+pgx.Identifier{role}.Sanitize())
	if _, err := conn.Exec(context.Background(), `CREATE FUNCTION public.grab() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
		CREATE TRIGGER grab AFTER INSERT ON pgshift.repair_log FOR EACH STATEMENT EXECUTE FUNCTION public.grab()`); err != nil {
		t.Fatal(err)
	}
	stages := &stageVar{}
	stages.Set(flags.StageDualWrite)
	f, err := dualwrite.New(context.Background(), dualwrite.Config{Old: pair.Old.Pool, New: pair.New.Pool, Stages: stages})
	if err == nil {
		f.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "old database") ||
		!strings.Contains(err.Error(), "table pgshift.repair_log owned by role "+role) {
		t.Fatalf("New: err %v, want a refusal naming the old database, the repair log and its owner %s", err, role)
	}
}

// requireNotSprung fails the test when any planted function ran, or mallory
// became a superuser.
func (p *plantedTrap) requireNotSprung(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var ran *string
	var super bool
	if err := p.db.Pool.QueryRow(ctx, `SELECT (SELECT string_agg(DISTINCT what, ', ') FROM public.trap_ran),
		(SELECT rolsuper FROM pg_roles WHERE rolname = $1)`, p.role).Scan(&ran, &super); err != nil {
		t.Fatal(err)
	}
	if ran != nil || super {
		t.Fatalf("database %s: pgshift ran what %s planted in schema public (%v); %s is superuser: %v",
			p.db.Name, p.role, deref(ran), p.role, super)
	}
}

func deref(s *string) string {
	if s == nil {
		return "nothing"
	}
	return *s
}

// TestCapturedWriteIgnoresPlantedOperator: the application connects as a
// superuser (as many do) and writes through the facade with capture, in a
// database where an unprivileged role planted operators and functions in
// schema public. Neither the capture triggers (which compare the old and new
// key as text[]) nor the facade's own statements (the repair log, its
// worker's lookups and backoff) run them, and the role stays unprivileged.
func TestCapturedWriteIgnoresPlantedOperator(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	installCapture(t, pair)
	users, _ := seedDomain(t, pair)
	traps := []*plantedTrap{plantTraps(t, pair.Old), plantTraps(t, pair.New)}
	b := setupOn(t, pair, flags.StageDualWrite, func(c *dualwrite.Config) { c.Capture = true })
	ctx := userCtx("planted")
	for i, sql := range []string{
		`UPDATE users SET name = 'changed' WHERE id = $1`,
		`UPDATE posts SET title = 'changed' WHERE user_id = $1`,
		`DELETE FROM events WHERE user_id = $1`,
	} {
		err := dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "planted"}, func(ctx context.Context, tx *dualwrite.Tx) error {
			_, err := tx.Exec(ctx, sql, users[i])
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	b.facade.Wait()
	for _, trap := range traps {
		trap.requireNotSprung(t)
	}
	// The repair worker's statements too: an entry whose row differs.
	pgtest.Exec(t, pair.New.Pool, `UPDATE users SET name = 'drifted' WHERE id = $1`, users[3])
	pgtest.Exec(t, pair.Old.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, created_at)
		VALUES ('public', 'users', ARRAY[$1::text], 'update', now() - interval '1 hour')`, users[3].String())
	requireRowsEqual(t, b, 20*time.Second, users[3].String())
	b.facade.Wait()
	for _, trap := range traps {
		trap.requireNotSprung(t)
	}
}

// requireRowsEqual waits until the repair worker has made the user's row the
// same on both sides.
func requireRowsEqual(t *testing.T, b *bundle, timeout time.Duration, user string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		o := pgtest.Dump(t, b.pair.Old.Pool, "users")
		n := pgtest.Dump(t, b.pair.New.Pool, "users")
		if strings.Join(o, "\n") == strings.Join(n, "\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("user %s not repaired after %v", user, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEveryPgshiftFunctionPinsSearchPath: every function pgshift creates in a
// database (its own and the capture triggers' functions, all in schema
// pgshift) runs with search_path = pg_catalog, pg_temp, so no object another
// role created can take the place of a built-in one in it.
func TestEveryPgshiftFunctionPinsSearchPath(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	installCapture(t, pair)
	ctx := context.Background()
	for _, pool := range []*pgxpool.Pool{pair.Old.Pool, pair.New.Pool} {
		rows, err := pool.Query(ctx, `SELECT p.oid::regprocedure::text, coalesce(array_to_string(p.proconfig, ';'), '')
			FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
			WHERE n.nspname = 'pgshift'
			   OR p.oid IN (SELECT tgfoid FROM pg_trigger WHERE tgname LIKE 'pgshift%')
			ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		type fn struct{ name, config string }
		fns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (fn, error) {
			var f fn
			return f, r.Scan(&f.name, &f.config)
		})
		if err != nil {
			t.Fatal(err)
		}
		// take_captured, refuse_truncate, fence, fence_old, one capture
		// function per table.
		if len(fns) != 7 {
			t.Fatalf("%d pgshift functions, want 7: %v", len(fns), fns)
		}
		for _, f := range fns {
			if !strings.Contains(";"+f.config+";", ";search_path=pg_catalog, pg_temp;") {
				t.Errorf("function %s: proconfig %q does not pin search_path = pg_catalog, pg_temp", f.name, f.config)
			}
		}
	}
}
