package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestSchemaDiffExitStatusAndJSON(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	if code, out, errOut := pgshift(t, "schema-diff", "--old", p.Old.URL, "--new", p.New.URL); code != exitOK || !strings.Contains(out, "match") {
		t.Fatalf("identical schemas: code %d\n%s%s", code, out, errOut)
	}
	pgtest.Exec(t, p.New.Pool, "ALTER TABLE users ADD COLUMN nickname text")
	code, out, errOut := pgshift(t, "schema-diff", "--old", p.Old.URL, "--new", p.New.URL, "--json")
	if code != exitDifferences {
		t.Fatalf("drifted schemas: code %d, want %d\n%s%s", code, exitDifferences, out, errOut)
	}
	var rep struct {
		Equal       bool
		Differences []struct{ Kind, Object string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if rep.Equal || len(rep.Differences) != 1 || !strings.Contains(rep.Differences[0].Object, "nickname") {
		t.Fatalf("differences = %+v, want the one extra column users.nickname", rep)
	}
}

func TestSyncSequencesMovesNewPastOld(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name) VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'a');
		INSERT INTO events (user_id, kind) SELECT '00000000-0000-0000-0000-000000000001', 'k' FROM generate_series(1, 50)`)
	if code, out, errOut := pgshift(t, "sync-sequences", "--old", p.Old.URL, "--new", p.New.URL, "--dry-run"); code != exitOK || !strings.Contains(out, "would move to") {
		t.Fatalf("dry run: code %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := pgshift(t, "sync-sequences", "--old", p.Old.URL, "--new", p.New.URL, "--gap", "10")
	if code != exitOK || !strings.Contains(out, "moved to 60") {
		t.Fatalf("sync: code %d\n%s%s", code, out, errOut)
	}
	pgtest.Exec(t, p.New.Pool, "INSERT INTO users (id, email, name) VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'a')")
	var id int64
	if err := p.New.Pool.QueryRow(context.Background(), "INSERT INTO events (user_id, kind) VALUES ('00000000-0000-0000-0000-000000000001', 'k') RETURNING id").Scan(&id); err != nil || id <= 50 {
		t.Fatalf("first id on new after sync = %d (err %v), want past old's 50", id, err)
	}
}

// TestSchemaOnNeitherSideIsAnError: a mistyped --schema (on neither side)
// is an error, exit 2, in schema-diff and sync-sequences as in verify, not
// "equal".
func TestSchemaOnNeitherSideIsAnError(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	for _, args := range [][]string{
		{"schema-diff", "--schema", "pubic"},
		{"schema-diff", "--schema", "pubic", "--json"},
		{"sync-sequences", "--schema", "pubic"},
		{"sync-sequences", "--schema", "pubic", "--dry-run", "--json"},
	} {
		code, out, errOut := pgshift(t, append(args, "--old", p.Old.URL, "--new", p.New.URL)...)
		if code != exitError || !strings.Contains(errOut, "exists on neither old nor new") || !strings.Contains(errOut, "pubic") {
			t.Errorf("%v: code %d, want %d and an error naming the schema\nstdout: %s\nstderr: %s", args, code, exitError, out, errOut)
		}
	}
}
