package schemadiff

import (
	"context"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// printForms are two ways versions print the same call: 13 to 16 print a
// call of timezone() as a function, 17 and later in SQL syntax.
var printForms = [][2]string{
	{"timezone('utc'::text, now())", "(now() AT TIME ZONE 'utc'::text)"},
	{"timezone('utc'::text, at)", "(at AT TIME ZONE 'utc'::text)"},
}

// printedAs rewrites def into the form form (0: function call, 1: SQL
// syntax) of printForms.
func printedAs(def string, form int) string {
	for _, f := range printForms {
		def = strings.ReplaceAll(def, f[1-form], f[form])
	}
	return def
}

// TestReprintTellsPrintFormsFromDifferences makes old's catalog read as a
// major version other than new's prints it (whatever versions the test runs
// on), and
// proves that reprint finds the default, check constraint and index equal,
// while a real difference (another time zone) is still reported.
func TestReprintTellsPrintFormsFromDifferences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE t (
			id int PRIMARY KEY,
			at timestamp DEFAULT (now() AT TIME ZONE 'utc'),
			d date CONSTRAINT recent CHECK (d > (now() AT TIME ZONE 'utc')::date - 1));
			CREATE INDEX t_at ON t ((at AT TIME ZONE 'utc'))`)
	}
	snapshots := func(rewrite func(def string, form int) string) (*snapshot, *snapshot) {
		t.Helper()
		o, err := load(ctx, p.Old.Pool, "public")
		if err != nil {
			t.Fatal(err)
		}
		n, err := load(ctx, p.New.Pool, "public")
		if err != nil {
			t.Fatal(err)
		}
		// The form new does not print.
		form := 1
		for _, c := range n.columns {
			if strings.Contains(c.Default, "AT TIME ZONE") {
				form = 0
			}
		}
		for i := range o.columns {
			o.columns[i].Default = rewrite(o.columns[i].Default, form)
		}
		for _, items := range o.items {
			for i := range items {
				items[i].Def = rewrite(items[i].Def, form)
			}
		}
		return o, n
	}

	o, n := snapshots(printedAs)
	if r := compare("public", o, n); len(r.Differences) != 3 {
		t.Fatalf("as text: %d differences, want 3 (the test's premise):\n%+v", len(r.Differences), r.Differences)
	}
	reprint(ctx, p.New.Pool, "public", o, n)
	if r := compare("public", o, n); !r.Equal() {
		t.Fatalf("reprinted: %+v, want equal", r.Differences)
	}

	o, n = snapshots(func(def string, form int) string {
		return strings.ReplaceAll(printedAs(def, form), "'utc'", "'Europe/Paris'")
	})
	reprint(ctx, p.New.Pool, "public", o, n)
	r := compare("public", o, n)
	if len(r.Differences) != 3 {
		t.Fatalf("another time zone: %d differences, want 3:\n%+v", len(r.Differences), r.Differences)
	}
	for _, d := range r.Differences {
		if !strings.Contains(d.Old, "Europe/Paris") {
			t.Errorf("difference %s shows old as %q, want old's own text", d.Object, d.Old)
		}
	}
}

// A definition is applied as one statement or not at all: text that smuggles
// more statements in (a COMMIT, then a DROP outside the transaction reprint
// rolls back) fails to reparse and stays a difference, and the others never
// run.
func TestReprintRunsOneStatementOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE t (id int PRIMARY KEY, n int DEFAULT 1); CREATE TABLE victim (id int)`)
	}
	o, err := load(ctx, p.Old.Pool, "public")
	if err != nil {
		t.Fatal(err)
	}
	n, err := load(ctx, p.New.Pool, "public")
	if err != nil {
		t.Fatal(err)
	}
	for i := range o.columns {
		if o.columns[i].Name == "n" {
			o.columns[i].Default = "2; COMMIT; DROP TABLE public.victim"
		}
	}
	reprint(ctx, p.New.Pool, "public", o, n)
	if r := compare("public", o, n); len(r.Differences) != 1 {
		t.Fatalf("%d differences, want the default's: %+v", len(r.Differences), r.Differences)
	}
	var exists bool
	if err := p.New.Pool.QueryRow(ctx, `SELECT to_regclass('public.victim') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Fatalf("victim exists = %v (err %v), want it untouched", exists, err)
	}
}
