package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// install --capture puts the triggers on the named tables, twice with the
// same result; schema-diff does not count them as drift; uninstall refuses
// while a repair log holds entries and then removes everything.
func TestInstallCaptureAndUninstall(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	urls := []string{"--old", p.Old.URL, "--new", p.New.URL}
	for range 2 {
		code, out, errOut := pgshift(t, append([]string{"install", "--capture", "--table", "users", "--table", "posts", "--json"}, urls...)...)
		if code != exitOK {
			t.Fatalf("install --capture: code %d\n%s%s", code, out, errOut)
		}
		var got struct{ Old, New struct{ Captured []string } }
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Old.Captured) != 2 || len(got.New.Captured) != 2 {
			t.Fatalf("install --capture --json = %s (err %v), want two tables per side", out, err)
		}
	}
	triggers := func(db *pgtest.DB) int {
		var n int
		if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshift%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if o, n := triggers(p.Old), triggers(p.New); o != 4 || n != 4 {
		t.Fatalf("%d triggers on old, %d on new; want 4 each", o, n)
	}
	// Capture on one side only is no schema drift.
	pgtest.Exec(t, p.New.Pool, "DROP TRIGGER pgshift_capture ON users")
	if code, out, errOut := pgshift(t, append([]string{"schema-diff"}, urls...)...); code != exitOK {
		t.Fatalf("schema-diff with pgshift's triggers on one side: code %d, want 0\n%s%s", code, out, errOut)
	}

	pgtest.Exec(t, p.Old.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', '{x}', 'test')`)
	code, out, errOut := pgshift(t, append([]string{"uninstall"}, urls...)...)
	if code != exitError || !strings.Contains(errOut, "run pgshift repair first, or give --force") {
		t.Fatalf("uninstall with a backlog: code %d, want %d and the reason\n%s%s", code, exitError, out, errOut)
	}
	if code, out, errOut := pgshift(t, append([]string{"uninstall", "--force"}, urls...)...); code != exitOK {
		t.Fatalf("uninstall --force: code %d\n%s%s", code, out, errOut)
	}
	if o, n := triggers(p.Old), triggers(p.New); o != 0 || n != 0 {
		t.Fatalf("%d triggers on old, %d on new after uninstall; want none", o, n)
	}
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		var schemas int
		if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgshift'").Scan(&schemas); err != nil || schemas != 0 {
			t.Fatalf("schema pgshift still there after uninstall (%d, %v)", schemas, err)
		}
	}
}
