package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// installed says whether db has schema pgshift and how many of pgshift's
// triggers.
func installed(t *testing.T, db *pgtest.DB) (schema bool, triggers int) {
	t.Helper()
	if err := db.Pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'pgshift'),
		(SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshift%')`).Scan(&schema, &triggers); err != nil {
		t.Fatal(err)
	}
	return schema, triggers
}

// TestUninstallChangesNothingUnlessBothSidesCan: with new unreachable, or
// with a backlog on new only, uninstall exits 2 and old keeps its schema and
// triggers (with --json too, where stdout then claims nothing); once both
// can, both are removed.
func TestUninstallChangesNothingUnlessBothSidesCan(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	urls := []string{"--old", p.Old.URL, "--new", p.New.URL}
	if code, out, errOut := pgshift(t, append([]string{"install", "--capture"}, urls...)...); code != exitOK {
		t.Fatalf("install --capture: code %d\n%s%s", code, out, errOut)
	}
	requireUntouched := func(what string) {
		t.Helper()
		for _, db := range []*pgtest.DB{p.Old, p.New} {
			if schema, triggers := installed(t, db); !schema || triggers != 6 {
				t.Fatalf("%s: %s has schema pgshift %v and %d triggers, want it untouched (true, 6)", what, db.Name, schema, triggers)
			}
		}
	}
	unreachable := "postgres://app:secret@127.0.0.1:1/app?connect_timeout=2"
	for _, args := range [][]string{{"uninstall"}, {"uninstall", "--json"}, {"uninstall", "--force", "--json"}} {
		code, out, errOut := pgshift(t, append(args, "--old", p.Old.URL, "--new", unreachable)...)
		if code != exitError || !strings.Contains(errOut, "connect to new") || !strings.Contains(errOut, "nothing was changed") || !onlyJSONError(args, out) {
			t.Fatalf("%v with new unreachable: code %d, want %d, no stdout (with --json the error as JSON) and a reason that says nothing changed\nstdout: %s\nstderr: %s", args, code, exitError, out, errOut)
		}
		requireUntouched(strings.Join(args, " ") + " with new unreachable")
	}
	pgtest.Exec(t, p.New.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'users', '{x}', 'test')`)
	code, out, errOut := pgshift(t, append([]string{"uninstall", "--json"}, urls...)...)
	if code != exitError || !strings.Contains(errOut, "new: the repair log holds 1 entries") || !strings.Contains(errOut, "nothing was changed on either side") || !onlyJSONError([]string{"--json"}, out) {
		t.Fatalf("uninstall with a backlog on new: code %d, want %d and the reason\nstdout: %s\nstderr: %s", code, exitError, out, errOut)
	}
	requireUntouched("uninstall with a backlog on new")

	code, out, errOut = pgshift(t, append([]string{"uninstall", "--force", "--json"}, urls...)...)
	var got struct{ Old, New struct{ Schema string } }
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got.Old.Schema != "pgshift" || got.New.Schema != "pgshift" {
		t.Fatalf("uninstall --force --json: code %d, stdout %s\n%s", code, out, errOut)
	}
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		if schema, triggers := installed(t, db); schema || triggers != 0 {
			t.Fatalf("after uninstall %s has schema pgshift %v and %d triggers", db.Name, schema, triggers)
		}
	}
}

// TestInstallRefusesSchemaAnotherRoleOwns: on new, another role created
// schema pgshift before pgshift was installed. install exits 2 naming the
// role, and installs nothing on old either.
func TestInstallRefusesSchemaAnotherRoleOwns(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	ctx := context.Background()
	role := "mallory_" + p.New.Name
	pgtest.Exec(t, p.New.Pool, "CREATE ROLE "+pgx.Identifier{role}.Sanitize())
	t.Cleanup(func() {
		_, _ = p.New.Pool.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize()+" CASCADE; DROP ROLE "+pgx.Identifier{role}.Sanitize())
	})
	pgtest.Exec(t, p.New.Pool, "CREATE SCHEMA pgshift AUTHORIZATION "+pgx.Identifier{role}.Sanitize())
	for _, args := range [][]string{{"install"}, {"install", "--json"}} {
		code, out, errOut := pgshift(t, append(args, "--old", p.Old.URL, "--new", p.New.URL)...)
		if code != exitError || !strings.Contains(errOut, "new: ") || !strings.Contains(errOut, "schema pgshift owned by role "+role) || !onlyJSONError(args, out) {
			t.Fatalf("%v: code %d, want %d and a refusal naming %s\nstdout: %s\nstderr: %s", args, code, exitError, role, out, errOut)
		}
		if schema, _ := installed(t, p.Old); schema {
			t.Fatalf("%v: old has schema pgshift after install was refused on new", args)
		}
	}
	var tables int
	if err := p.New.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relnamespace = 'pgshift'::regnamespace`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("install put %d relations in the schema it refused (err %v)", tables, err)
	}
}

// onlyJSONError reports whether a failed command's stdout is what it should
// be: empty, or with --json one JSON object holding the error.
func onlyJSONError(args []string, out string) bool {
	if !slices.Contains(args, "--json") {
		return out == ""
	}
	var v struct {
		Error string `json:"error"`
	}
	return json.Unmarshal([]byte(out), &v) == nil && v.Error != ""
}
