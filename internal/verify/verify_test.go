package verify_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/verify"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const ddl = `CREATE SCHEMA "Ops";
CREATE TYPE "Ops".kind AS ENUM ('a', 'b');
CREATE TABLE "Ops"."Tasks" ("Team" text, id int, kind "Ops".kind, due timestamptz, score numeric, tags text[], body jsonb, blob bytea,
	PRIMARY KEY ("Team", id))`

// setup returns equal copies of a 120-row table on both sides.
func setup(t *testing.T) (*pgtest.Pair, *rowsync.Table) {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, ddl)
		pgtest.Exec(t, db.Pool, `INSERT INTO "Ops"."Tasks" SELECT 'team ' || i % 4, i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END::"Ops".kind,
			'2025-01-01'::timestamptz + i * interval '1 hour', i / 7.0, ARRAY['x', i::text], jsonb_build_object('i', i), '\xff'
			FROM generate_series(1, 120) AS i`)
	}
	tbl, err := rowsync.LoadTable(context.Background(), p.Old.Pool, "Ops", "Tasks")
	if err != nil {
		t.Fatal(err)
	}
	return p, tbl
}

func run(t *testing.T, p *pgtest.Pair, tbl *rowsync.Table, opts verify.Options) verify.Result {
	t.Helper()
	if opts.ChunkSize == 0 {
		opts.ChunkSize = 25
	}
	if opts.RecheckDelay == 0 {
		opts.RecheckDelay = time.Millisecond
	}
	res, err := verify.Run(context.Background(), p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, opts)
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	return res[0]
}

// modes are verify's two ways of comparing: key-hash buckets (the
// default) and key chunks.
var modes = []struct {
	name string
	opts verify.Options
}{{"buckets", verify.Options{Buckets: 64}}, {"chunks", verify.Options{Buckets: -1}}}

func TestVerifyEqualTablesReportsNothing(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	r := run(t, p, tbl, verify.Options{Buckets: -1})
	if r.Differences() != 0 || r.ChunksDiffering != 0 || r.Rows != 120 || r.Chunks != 5 {
		t.Fatalf("chunks: %+v, want 120 rows in 5 chunks, no differences", r)
	}
	r = run(t, p, tbl, verify.Options{Buckets: 64})
	if r.Differences() != 0 || r.ChunksDiffering != 0 || r.Rows != 120 || r.Chunks != 1 {
		t.Fatalf("buckets: %+v, want 120 rows compared as a whole, no differences", r)
	}
	if _, err := verify.Run(context.Background(), p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, verify.Options{Buckets: 100}); err == nil ||
		!strings.Contains(err.Error(), "want a power of two") {
		t.Fatalf("100 buckets: %v, want an error asking for a power of two", err)
	}
}

func TestVerifyCountsMissingExtraDifferentWithKeysAndRepairs(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			testVerifyCountsAndRepairs(t, m.opts)
		})
	}
}

func testVerifyCountsAndRepairs(t *testing.T, mode verify.Options) {
	p, tbl := setup(t)
	pgtest.Exec(t, p.New.Pool, `DELETE FROM "Ops"."Tasks" WHERE id IN (5, 6);
		UPDATE "Ops"."Tasks" SET tags = '{x}' WHERE id = 50;
		UPDATE "Ops"."Tasks" SET kind = 'a' WHERE id = 51;
		INSERT INTO "Ops"."Tasks" ("Team", id) VALUES ('team 0', 1000), ('zzz', 1)`)
	r := run(t, p, tbl, mode)
	got := fmt.Sprint(r.Missing, r.Extra, r.Different, r.Examples.Missing, r.Examples.Extra, r.Examples.Different)
	if want := "2 2 2 [[team 1 5] [team 2 6]] [[team 0 1000] [zzz 1]] [[team 2 50] [team 3 51]]"; got != want {
		t.Fatalf("missing extra different = %s, want %s", got, want)
	}
	repair := mode
	repair.Repair = true
	installPgshift(t, p)
	r = run(t, p, tbl, repair)
	if r.Logged != 6 {
		t.Errorf("repair logged %d differences, want 6", r.Logged)
	}
	drain(t, p)
	if r := run(t, p, tbl, mode); r.Differences() != 0 {
		t.Fatalf("after repair: %+v, want equal", r)
	}
}

func TestVerifyRepairFromNewChangesOld(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	pgtest.Exec(t, p.New.Pool, `UPDATE "Ops"."Tasks" SET score = -1 WHERE id = 7; INSERT INTO "Ops"."Tasks" ("Team", id) VALUES ('new only', 1)`)
	installPgshift(t, p)
	run(t, p, tbl, verify.Options{Repair: true, Source: "new"})
	drain(t, p)
	var score float64
	var n int
	if err := p.Old.Pool.QueryRow(context.Background(), `SELECT (SELECT score FROM "Ops"."Tasks" WHERE id = 7), (SELECT count(*) FROM "Ops"."Tasks")`).Scan(&score, &n); err != nil || score != -1 || n != 121 {
		t.Fatalf("old has score %v and %d rows (err %v), want new's -1 and 121", score, n, err)
	}
}

func TestVerifyDoesNotReportAWriteInFlight(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	// old has a write new has not received yet; it arrives while verify
	// waits to re-check.
	pgtest.Exec(t, p.Old.Pool, `UPDATE "Ops"."Tasks" SET score = 42 WHERE id = 9`)
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = p.New.Pool.Exec(context.Background(), `UPDATE "Ops"."Tasks" SET score = 42 WHERE id = 9`)
	}()
	r := run(t, p, tbl, verify.Options{RecheckDelay: 3 * time.Second})
	if r.Differences() != 0 || r.Transient != 1 {
		t.Fatalf("result %+v, want the in-flight write counted transient, not as a difference", r)
	}
}

// installPgshift installs pgshift's schema on both sides, for the repair
// log.
func installPgshift(t *testing.T, p *pgtest.Pair) {
	t.Helper()
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		if err := pgshiftdb.Install(context.Background(), db.Pool); err != nil {
			t.Fatal(err)
		}
	}
}

// drain repairs what the repair logs hold, as `pgshift verify --repair`
// does after verify.
func drain(t *testing.T, p *pgtest.Pair) {
	t.Helper()
	r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: p.Old.Pool, New: p.New.Pool})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := r.Drain(context.Background()); err != nil || rep.Postponed != 0 {
		t.Fatalf("drain: %+v, %v", rep, err)
	}
}

func TestVerifyRejectsUnknownSource(t *testing.T) {
	t.Parallel()
	if _, err := verify.Run(context.Background(), nil, nil, nil, verify.Options{Source: "both"}); err == nil {
		t.Fatal("source both accepted")
	}
}

// TestVerifyTellsArraysOfDifferentShapesApart: PostgreSQL's array hash
// ignores dimensions and lower bounds, so the typed row hash must add them:
// '{1,2}' and '{{1,2}}', '{3}' and '[5:5]={3}' differ.
func TestVerifyTellsArraysOfDifferentShapesApart(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			p := pgtest.NewPair(t, pgtest.Empty)
			for _, db := range []*pgtest.DB{p.Old, p.New} {
				pgtest.Exec(t, db.Pool, `CREATE TABLE shapes (id int PRIMARY KEY, a int[], t text[])`)
			}
			pgtest.Exec(t, p.Old.Pool, `INSERT INTO shapes VALUES (1, '{1,2}', '{x}'), (2, '{3}', '{y}'), (3, '{4}', '{z}')`)
			pgtest.Exec(t, p.New.Pool, `INSERT INTO shapes VALUES (1, '{{1,2}}', '{x}'), (2, '[5:5]={3}', '{y}'), (3, '{4}', '[0:0]={z}')`)
			tbl, err := rowsync.LoadTable(context.Background(), p.Old.Pool, "public", "shapes")
			if err != nil {
				t.Fatal(err)
			}
			if r := run(t, p, tbl, m.opts); r.Different != 3 {
				t.Fatalf("verify found %d rows different (%+v); want 3", r.Different, r.Examples)
			}
		})
	}
}

// TestVerifyThatRepairedIsRecordedRepairedNotEqual: a verify that entered
// its differences in the repair log has not shown the sides equal; the
// gates (pgshift.verify_runs) want the verify after the drain.
func TestVerifyThatRepairedIsRecordedRepairedNotEqual(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, tbl := setup(t)
	installPgshift(t, p)
	pgtest.Exec(t, p.New.Pool, `UPDATE "Ops"."Tasks" SET score = -1 WHERE id = 7`)
	latest := func() (differences, repaired int64, equal bool) {
		t.Helper()
		if err := p.New.Pool.QueryRow(ctx, `SELECT differences, repaired, equal FROM pgshift.verify_runs
			WHERE table_schema = 'Ops' AND table_name = 'Tasks' ORDER BY id DESC LIMIT 1`).Scan(&differences, &repaired, &equal); err != nil {
			t.Fatal(err)
		}
		return differences, repaired, equal
	}
	run(t, p, tbl, verify.Options{Repair: true})
	if d, r, eq := latest(); d != 1 || r != 1 || eq {
		t.Fatalf("verify --repair recorded %d differences, %d repaired, equal %v; want 1, 1, not equal", d, r, eq)
	}
	drain(t, p)
	run(t, p, tbl, verify.Options{})
	if d, _, eq := latest(); d != 0 || !eq {
		t.Fatalf("the verify after the drain recorded %d differences, equal %v; want 0, equal", d, eq)
	}
}
