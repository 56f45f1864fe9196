package main

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// A --table that exists on neither side is a typo: every command that takes
// --table fails with exit 2 naming it, instead of reporting "equal" or
// "nothing to do".
func TestMissingTableIsAnErrorOnEveryCommand(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	for _, args := range [][]string{
		{"schema-diff"}, {"schema-diff", "--json"}, {"status"}, {"sync-sequences"}, {"sync-sequences", "--dry-run"},
		{"backfill"}, {"verify"},
	} {
		code, out, errOut := pgshift(t, append(args, "--table", "nosuch", "--old", p.Old.URL, "--new", p.New.URL)...)
		if code != exitError || !strings.Contains(errOut, "nosuch") {
			t.Errorf("%v --table nosuch: code %d, want %d and an error naming the table\nstdout: %s\nstderr: %s", args, code, exitError, out, errOut)
		}
	}
}

// Old and new being one database is refused by every command that reads
// both: verify would say "equal" and a copy would copy rows onto themselves.
func TestSameDatabaseOnBothSidesIsRefused(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	for _, args := range [][]string{
		{"verify"}, {"verify", "--json"}, {"backfill"}, {"schema-diff"}, {"status"}, {"sync-sequences"}, {"repair"},
	} {
		code, out, errOut := pgshift(t, append(args, "--old", p.Old.URL, "--new", p.Old.URL)...)
		if code != exitError || !strings.Contains(errOut, "same database") {
			t.Errorf("%v with --new = --old: code %d, want %d and a refusal\nstdout: %s\nstderr: %s", args, code, exitError, out, errOut)
		}
	}
	// Another database on the same server is not the same database.
	other := pgtest.NewDB(t, p.Old.Server, pgtest.Domain)
	if code, out, errOut := pgshift(t, "verify", "--old", p.Old.URL, "--new", other.URL); code != exitOK {
		t.Fatalf("verify between two databases of one server: code %d, want %d\nstdout: %s\nstderr: %s", code, exitOK, out, errOut)
	}
}
