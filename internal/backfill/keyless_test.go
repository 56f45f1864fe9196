package backfill_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// keylessDDL is a keyed parent and a keyless log of it whose rows repeat.
const keylessDDL = `CREATE TABLE account (id int PRIMARY KEY);
CREATE TABLE audit (account int REFERENCES account, what text, at timestamptz, doc jsonb)`

// setupKeyless fills old with 30 accounts and 300 audit rows (each row
// three times, one of them all NULLs but the account), and new with the
// accounts only.
func setupKeyless(t *testing.T) (*pgtest.Pair, []*rowsync.Table) {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, keylessDDL)
		pgtest.Exec(t, db.Pool, `INSERT INTO account SELECT generate_series(1, 30)`)
	}
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO audit SELECT i % 30 + 1, CASE WHEN i % 100 = 0 THEN NULL ELSE 'did ' || i % 100 END,
		CASE WHEN i % 100 = 0 THEN NULL ELSE '2025-01-01'::timestamptz + (i % 100) * interval '1 second' END, jsonb_build_object('i', i % 100)
		FROM generate_series(1, 300) AS i`)
	ctx := context.Background()
	parent, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "account")
	if err != nil {
		t.Fatal(err)
	}
	audit, err := rowsync.LoadTableOrKeyless(ctx, p.Old.Pool, "public", "audit")
	if err != nil || !audit.Keyless() {
		t.Fatalf("audit: %v, keyless %v", err, audit != nil && audit.Keyless())
	}
	return p, []*rowsync.Table{audit, parent}
}

func requireSameRows(t *testing.T, p *pgtest.Pair, table string) {
	t.Helper()
	if o, n := pgtest.Dump(t, p.Old.Pool, table), pgtest.Dump(t, p.New.Pool, table); !slices.Equal(o, n) {
		t.Fatalf("%s differs as a multiset: old %d rows, new %d rows", table, len(o), len(n))
	}
}

func runBackfill(t *testing.T, p *pgtest.Pair, tables []*rowsync.Table, opts backfill.Options) backfill.Result {
	t.Helper()
	res, err := backfill.Run(context.Background(), p.Old.Pool, p.New.Pool, tables, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.Table.Name == "audit" {
			return r
		}
	}
	t.Fatalf("no result for audit in %+v", res)
	return backfill.Result{}
}

func TestBackfillCopiesKeylessTableWithDuplicatesExactly(t *testing.T) {
	t.Parallel()
	p, tables := setupKeyless(t)
	// Rows new holds already (a stale copy) are replaced, not added to.
	pgtest.Exec(t, p.New.Pool, `INSERT INTO audit (account, what) VALUES (1, 'stale'), (1, 'stale')`)
	var seen []backfill.Progress
	r := runBackfill(t, p, tables, backfill.Options{Workers: 2, Progress: func(pr backfill.Progress) {
		if pr.Table.Name == "audit" {
			seen = append(seen, pr)
		}
	}})
	if !r.Whole || r.Rows != 300 || r.Inserted != 300 || r.Chunks != 1 || r.Pieces != 1 {
		t.Fatalf("result %+v, want audit copied whole: 300 rows in one piece of one chunk", r)
	}
	if len(seen) != 1 || seen[0].Rows != 300 || !seen[0].Done {
		t.Fatalf("progress %+v, want one report of 300 rows, done", seen)
	}
	requireSameRows(t, p, "audit")
}

// A second run skips the finished table; a restarted one copies it again in
// place of new's copy: never two copies of a row.
func TestBackfillOfKeylessTableRunAgainDoesNotDuplicate(t *testing.T) {
	t.Parallel()
	p, tables := setupKeyless(t)
	runBackfill(t, p, tables, backfill.Options{})
	if r := runBackfill(t, p, tables, backfill.Options{}); !r.AlreadyDone || r.Rows != 0 {
		t.Fatalf("second run: %+v, want audit already done", r)
	}
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO audit (account, what) VALUES (2, 'later')`)
	if r := runBackfill(t, p, tables, backfill.Options{Restart: true}); r.Rows != 301 {
		t.Fatalf("restarted run: %+v, want 301 rows copied", r)
	}
	requireSameRows(t, p, "audit")
}

// The worker copying a table whole holds its chunk: workers whose leases
// say it expired long ago never start a second copy alongside.
func TestBackfillOfKeylessTableCopiesOnceWhateverTheLease(t *testing.T) {
	t.Parallel()
	p, tables := setupKeyless(t)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO audit SELECT a.* FROM audit a, generate_series(1, 200)`) // 60,300 rows
	r := runBackfill(t, p, tables, backfill.Options{Workers: 4, Lease: time.Millisecond})
	if r.Pieces != 1 || r.Rows != 60300 {
		t.Fatalf("result %+v, want one copy of 60300 rows", r)
	}
	requireSameRows(t, p, "audit")
}
