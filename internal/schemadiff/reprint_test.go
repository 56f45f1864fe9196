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

// otherPrint rewrites def as the other version would print it.
func otherPrint(def string) string {
	for _, f := range printForms {
		if strings.Contains(def, f[0]) {
			return strings.ReplaceAll(def, f[0], f[1])
		}
		if strings.Contains(def, f[1]) {
			return strings.ReplaceAll(def, f[1], f[0])
		}
	}
	return def
}

// TestReprintTellsPrintFormsFromDifferences makes old's catalog read as
// another major version prints it (on whatever version the test runs), and
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
	snapshots := func(rewrite func(string) string) (*snapshot, *snapshot) {
		t.Helper()
		o, err := load(ctx, p.Old.Pool, "public")
		if err != nil {
			t.Fatal(err)
		}
		n, err := load(ctx, p.New.Pool, "public")
		if err != nil {
			t.Fatal(err)
		}
		rewritten := 0
		for i := range o.columns {
			if def := rewrite(o.columns[i].Default); def != o.columns[i].Default {
				o.columns[i].Default = def
				rewritten++
			}
		}
		for _, items := range o.items {
			for i := range items {
				if def := rewrite(items[i].Def); def != items[i].Def {
					items[i].Def = def
					rewritten++
				}
			}
		}
		if rewritten != 3 {
			t.Fatalf("rewrote %d definitions, want the default, the check and the index", rewritten)
		}
		return o, n
	}

	o, n := snapshots(otherPrint)
	if r := compare("public", o, n); len(r.Differences) != 3 {
		t.Fatalf("as text: %d differences, want 3 (the test's premise):\n%+v", len(r.Differences), r.Differences)
	}
	reprint(ctx, p.New.Pool, "public", o, n)
	if r := compare("public", o, n); !r.Equal() {
		t.Fatalf("reprinted: %+v, want equal", r.Differences)
	}

	o, n = snapshots(func(def string) string { return strings.ReplaceAll(otherPrint(def), "'utc'", "'Europe/Paris'") })
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
