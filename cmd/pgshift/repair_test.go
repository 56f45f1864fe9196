package main

import (
	"context"
	"encoding/json"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestInstallIsIdempotent(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	for i := 0; i < 2; i++ {
		code, out, errOut := pgshift(t, "install", "--old", p.Old.URL, "--new", p.New.URL)
		if code != exitOK || !strings.Contains(out, "new: schema pgshift installed") {
			t.Fatalf("install #%d: code %d\n%s%s", i+1, code, out, errOut)
		}
	}
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		var ok bool
		if err := db.Pool.QueryRow(context.Background(), "SELECT to_regclass('pgshift.repair_log') IS NOT NULL").Scan(&ok); err != nil || !ok {
			t.Fatalf("pgshift.repair_log missing after install: %v", err)
		}
	}
}

// TestRepairDrainsLogsBothWays logs rows the other side missed, on each side,
// and checks that `pgshift repair` copies them and empties both logs.
func TestRepairDrainsLogsBothWays(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name) VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'only on old');
		INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', '{00000000-0000-0000-0000-000000000001}', 'test')`)
	pgtest.Exec(t, p.New.Pool, `INSERT INTO users (id, email, name) VALUES ('00000000-0000-0000-0000-000000000002', 'b@example.com', 'only on new');
		INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', '{00000000-0000-0000-0000-000000000002}', 'test')`)
	code, out, errOut := pgshift(t, "repair", "--old", p.Old.URL, "--new", p.New.URL)
	if code != exitOK {
		t.Fatalf("repair: code %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"copied old -> new: 1 rows", "copied new -> old: 1 rows", "repair log after: old 0 entries, new 0 entries"} {
		if !strings.Contains(out, want) {
			t.Fatalf("repair output lacks %q:\n%s", want, out)
		}
	}
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		var n int
		if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM users").Scan(&n); err != nil || n != 2 {
			t.Fatalf("%s has %d users after repair (err %v), want 2", db.Name, n, err)
		}
	}
}

// TestRepairBatchMustBePositive: --batch takes a positive number of
// entries, and says so otherwise.
func TestRepairBatchMustBePositive(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"0", "-5", "many"} {
		code, out, errOut := pgshift(t, "repair", "--batch", bad, "--old", "postgres://nowhere/none", "--new", "postgres://nowhere/none")
		if code != exitError || !strings.Contains(errOut, "want a positive number of entries") {
			t.Fatalf("repair --batch %s: code %d, want %d and the fix named\n%s%s", bad, code, exitError, out, errOut)
		}
	}
}

// TestRepairRetriesEntriesInBackoff logs a row whose entry waits out a
// back-off after failed attempts: `pgshift repair` copies it now and says
// it did, instead of reporting nothing done with the entry still there.
func TestRepairRetriesEntriesInBackoff(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name) VALUES ('00000000-0000-0000-0000-000000000003', 'c@example.com', 'only on old');
		INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, attempts, next_attempt_at, last_error)
		VALUES ('public', 'users', '{00000000-0000-0000-0000-000000000003}', 'test', 3, now() + interval '1 hour', 'new was down')`)
	code, out, errOut := pgshift(t, "repair", "--old", p.Old.URL, "--new", p.New.URL)
	if code != exitOK {
		t.Fatalf("repair: code %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"waiting out a back-off after failing: 1 entries", "copied old -> new: 1 rows", "repair log after: old 0 entries, new 0 entries"} {
		if !strings.Contains(out, want) {
			t.Fatalf("repair output lacks %q:\n%s", want, out)
		}
	}
}

// TestRepairLeavesEntriesAnotherRepairerHolds runs `pgshift repair` while
// another transaction (as another repairer's pass does) holds one of two
// entries: it settles the other, leaves the held one, and exits 0.
func TestRepairLeavesEntriesAnotherRepairerHolds(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name) VALUES
			('00000000-0000-0000-0000-000000000004', 'd@example.com', 'd'), ('00000000-0000-0000-0000-000000000005', 'e@example.com', 'e');
		INSERT INTO pgshift.repair_log (table_schema, table_name, key, op)
		VALUES ('public', 'users', '{00000000-0000-0000-0000-000000000004}', 'test'), ('public', 'users', '{00000000-0000-0000-0000-000000000005}', 'test')`)
	ctx := context.Background()
	other, err := p.Old.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Rollback(ctx) }()
	if _, err := other.Exec(ctx, "SELECT id FROM pgshift.repair_log WHERE key = '{00000000-0000-0000-0000-000000000004}' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := pgshift(t, "repair", "--old", p.Old.URL, "--new", p.New.URL)
	if code != exitOK {
		t.Fatalf("repair beside another repairer: code %d, want 0\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"copied old -> new: 1 rows", "1 entries remain that this run did not take"} {
		if !strings.Contains(out, want) {
			t.Fatalf("repair output lacks %q:\n%s", want, out)
		}
	}
}

func TestStatusShowsBacklogAndCounts(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name) VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'a');
		INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', '{00000000-0000-0000-0000-000000000001}', 'test')`)
	code, out, errOut := pgshift(t, "status", "--old", p.Old.URL, "--new", p.New.URL, "--json")
	if code != exitOK {
		t.Fatalf("status: code %d\n%s%s", code, out, errOut)
	}
	var rep struct {
		Backlog struct {
			Old, New struct{ Entries int64 }
		}
		Tables []struct {
			Table    string
			Old, New struct{ Rows int64 }
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if rep.Backlog.Old.Entries != 1 || rep.Backlog.New.Entries != 0 {
		t.Fatalf("backlog old %d new %d, want 1 and 0\n%s", rep.Backlog.Old.Entries, rep.Backlog.New.Entries, out)
	}
	var users bool
	for _, tc := range rep.Tables {
		if strings.HasSuffix(tc.Table, "users") {
			users = tc.Old.Rows == 1 && tc.New.Rows == 0 && tc.Table == "users"
		}
	}
	if !users {
		t.Fatalf("users counts wrong, want old 1 new 0:\n%s", out)
	}
}

// TestBackfillCopiesParentsBeforeChildren backfills the reference domain,
// whose posts and events reference users, into an empty new database: the
// tables sort after users by name too, so order alone does not save it.
func TestBackfillCopiesParentsBeforeChildren(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name) SELECT gen_random_uuid(), i || '@example.com', 'u' FROM generate_series(1, 50) i;
		INSERT INTO posts (id, user_id, title) SELECT gen_random_uuid(), id, 't' FROM users;
		INSERT INTO events (user_id, kind) SELECT id, 'k' FROM users`)
	code, out, errOut := pgshift(t, "backfill", "--old", p.Old.URL, "--new", p.New.URL, "--workers", "3")
	if code != exitOK {
		t.Fatalf("backfill: code %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := pgshift(t, "verify", "--old", p.Old.URL, "--new", p.New.URL); code != exitOK {
		t.Fatalf("verify after backfill: code %d\n%s%s", code, out, errOut)
	}
}

// TestVerifySaysWhenNotRecorded: verify run by a role that may read the
// application's tables but not schema pgshift still compares, and says
// that its result was not recorded and why (text and --json), rather than
// leaving the gates without a verify silently.
func TestVerifySaysWhenNotRecorded(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	role := "verifier_" + p.New.Name
	var urls []string
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN")
		t.Cleanup(func() {
			_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize()+"; DROP ROLE "+pgx.Identifier{role}.Sanitize())
		})
		pgtest.Exec(t, db.Pool, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+pgx.Identifier{role}.Sanitize())
		u, err := url.Parse(db.URL)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(role)
		urls = append(urls, u.String())
	}
	code, out, errOut := pgshift(t, "verify", "--table", "users", "--old", urls[0], "--new", urls[1])
	if code != exitOK || !strings.Contains(out, "equal") || !strings.Contains(errOut, "result not recorded") || !strings.Contains(errOut, "USAGE") {
		t.Fatalf("verify as %s: code %d, want 0, equal, and why the result was not recorded\nstdout: %s\nstderr: %s", role, code, out, errOut)
	}
	code, out, _ = pgshift(t, "verify", "--table", "users", "--json", "--old", urls[0], "--new", urls[1])
	if code != exitOK || !strings.Contains(out, `"not_recorded"`) {
		t.Fatalf("verify --json as %s: code %d, want 0 and not_recorded\n%s", role, code, out)
	}
}

// TestStatusWithNewDownShowsOld runs status with new unreachable (nothing
// listens on its port; its URL carries a password): it prints old's backlog
// and counts, marks new's "?", names new and the error without the
// password, and exits 2; with --json the report says the same.
func TestStatusWithNewDownShowsOld(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name) VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'a');
		INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', '{00000000-0000-0000-0000-000000000001}', 'test')`)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "postgres://app:s3cret-pw@" + l.Addr().String() + "/app?sslmode=disable"
	_ = l.Close() // nothing listens there now: connection refused
	code, out, errOut := pgshift(t, "status", "--old", p.Old.URL, "--new", down)
	if code != exitError {
		t.Fatalf("status with new down: code %d, want %d\n%s%s", code, exitError, out, errOut)
	}
	for _, want := range []string{"old: 1 entries", "new: unknown (unreachable)", "new could not be reached", "users"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "connect to new") {
		t.Fatalf("stderr does not name the side that could not be reached:\n%s", errOut)
	}
	if strings.Contains(out+errOut, "s3cret-pw") {
		t.Fatalf("the password of new's URL is in the output:\n%s%s", out, errOut)
	}
	code, out, errOut = pgshift(t, "status", "--old", p.Old.URL, "--new", down, "--json")
	if code != exitError {
		t.Fatalf("status --json with new down: code %d\n%s%s", code, out, errOut)
	}
	var rep struct {
		Backlog struct{ Old struct{ Entries int64 } }
		Tables  []struct {
			Table string
			Old   struct{ Rows int64 }
			New   struct{ Unknown bool }
		}
		Unreachable map[string]string
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if rep.Backlog.Old.Entries != 1 || rep.Unreachable["new"] == "" || rep.Unreachable["old"] != "" {
		t.Fatalf("report %+v: want old's entry and new unreachable\n%s", rep, out)
	}
	for _, tc := range rep.Tables {
		if tc.Table == "users" && (tc.Old.Rows != 1 || !tc.New.Unknown) {
			t.Fatalf("users: %+v, want 1 row on old and new unknown\n%s", tc, out)
		}
	}
}
