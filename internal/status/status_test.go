package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/status"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func exec(t *testing.T, db *pgtest.DB, sql string) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v\n%s", db.Name, err, sql)
	}
}

func collect(t *testing.T, p *pgtest.Pair, schema string, tables []string, opts status.Options) *status.Report {
	t.Helper()
	r, err := status.Collect(context.Background(), p.Old.Pool, p.New.Pool, schema, tables, opts)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return r
}

func TestBacklogCountsEntriesAndOldestAge(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	exec(t, p.Old, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, created_at)
VALUES ('public', 'users', '{a}', 'update', now() - interval '90 seconds'),
       ('public', 'users', '{b}', 'update', now()),
       ('public', 'posts', '{c}', 'delete', now())`)
	r := collect(t, p, "public", nil, status.Options{})
	if !r.Backlog.Old.Installed || r.Backlog.Old.Entries != 3 || r.Backlog.Old.OldestAge < 90*time.Second || r.Backlog.Old.OldestAge > time.Hour {
		t.Fatalf("old backlog %+v, want 3 entries, oldest about 90s", r.Backlog.Old)
	}
	if !r.Backlog.New.Installed || r.Backlog.New.Entries != 0 || r.Backlog.New.OldestAge != 0 {
		t.Fatalf("new backlog %+v, want installed and empty", r.Backlog.New)
	}
}

func TestBacklogWithoutRepairLogIsNotInstalled(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	r := collect(t, p, "public", nil, status.Options{})
	for _, b := range []pgshiftdb.SideBacklog{r.Backlog.Old, r.Backlog.New} {
		if b.Installed || b.Entries != 0 || b.String() != "not installed" {
			t.Fatalf("backlog %+v (%s), want not installed", b, b)
		}
	}
}

func TestRowCountsAreExactForEveryTableOfTheSchema(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	exec(t, p.Old, `INSERT INTO users (id, email, name) SELECT gen_random_uuid(), g || '@example.com', 'u' FROM generate_series(1, 5) g`)
	exec(t, p.New, `INSERT INTO users (id, email, name) SELECT gen_random_uuid(), g || '@example.com', 'u' FROM generate_series(1, 3) g`)
	r := collect(t, p, "", nil, status.Options{})
	want := []status.TableCount{
		{Table: "events"},
		{Table: "posts"},
		{Table: "users", Old: status.Count{Rows: 5}, New: status.Count{Rows: 3}},
	}
	if r.Schema != "public" || len(r.Tables) != len(want) {
		t.Fatalf("tables %+v, want %+v (pgshift's own left out)", r.Tables, want)
	}
	for i := range want {
		if r.Tables[i] != want[i] {
			t.Fatalf("table %d: got %+v, want %+v", i, r.Tables[i], want[i])
		}
	}
}

func TestLargeTableReportsFlaggedEstimate(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	}
	exec(t, p.Old, `INSERT INTO t SELECT generate_series(1, 500); ANALYZE t`)
	exec(t, p.New, `INSERT INTO t SELECT generate_series(1, 50); ANALYZE t`)
	r := collect(t, p, "public", []string{"t"}, status.Options{ExactCountLimit: 100})
	got := r.Tables[0]
	if !got.Old.Estimate || got.Old.Rows != 500 || got.New.Estimate || got.New.Rows != 50 {
		t.Fatalf("got %+v, want old ~500 estimated, new 50 exact", got)
	}
	r = collect(t, p, "public", []string{"t"}, status.Options{ExactCountLimit: -1})
	if r.Tables[0].Old.Estimate {
		t.Fatalf("negative limit must count exactly: %+v", r.Tables[0])
	}
}

func TestQuotedTableMissingOnOneSide(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		exec(t, db, `CREATE SCHEMA "Shop Data"`)
	}
	exec(t, p.Old, `CREATE TABLE "Shop Data"."Order Items" (id int); INSERT INTO "Shop Data"."Order Items" VALUES (1), (2)`)
	r := collect(t, p, "Shop Data", nil, status.Options{})
	want := status.TableCount{Table: "Order Items", Old: status.Count{Rows: 2}, New: status.Count{Missing: true}}
	if len(r.Tables) != 1 || r.Tables[0] != want {
		t.Fatalf("got %+v, want %+v", r.Tables, want)
	}
}

func TestReportRendersForPeopleAndJSON(t *testing.T) {
	t.Parallel()
	r := &status.Report{
		Schema:  "public",
		Backlog: pgshiftdb.Backlog{Old: pgshiftdb.SideBacklog{Installed: true, Entries: 2, OldestAge: 90 * time.Second}},
		Tables:  []status.TableCount{{Table: "big", Old: status.Count{Rows: 2000000, Estimate: true}, New: status.Count{Missing: true}}},
	}
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"old: 2 entries, oldest 1m30s", "new: not installed", "~2000000 (estimate)", "missing"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("rendering lacks %q:\n%s", want, b.String())
		}
	}
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"backlog":{"old":{"installed":true,"entries":2,"oldest_age_seconds":90}`, `"old":{"rows":2000000,"estimate":true}`, `"new":{"rows":0,"missing":true}`} {
		if !strings.Contains(string(j), want) {
			t.Fatalf("JSON lacks %s:\n%s", want, j)
		}
	}
}
