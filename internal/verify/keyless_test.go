package verify_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/verify"
)

// keylessDDL is a table without a key whose rows repeat: a log nobody keyed.
const keylessDDL = `CREATE TABLE audit (at timestamptz, who text, what jsonb, amount numeric)`

// setupKeyless returns equal copies on both sides of a keyless table of 200
// rows, every row twice and one NULL-laden row three times.
func setupKeyless(t *testing.T) (*pgtest.Pair, *rowsync.Table) {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, keylessDDL)
		pgtest.Exec(t, db.Pool, `INSERT INTO audit SELECT '2025-01-01'::timestamptz + (i % 100) * interval '1 minute', 'user ' || i % 100,
			jsonb_build_object('n', i % 100), (i % 100) / 3.0 FROM generate_series(1, 200) AS i`)
		pgtest.Exec(t, db.Pool, `INSERT INTO audit VALUES (NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL)`)
	}
	tbl, err := rowsync.LoadTableOrKeyless(context.Background(), p.Old.Pool, "public", "audit")
	if err != nil {
		t.Fatal(err)
	}
	if !tbl.Keyless() {
		t.Fatalf("audit loaded with key %v, want none", tbl.Key)
	}
	return p, tbl
}

func TestKeylessTablesEqualAsMultisetsVerifyEqual(t *testing.T) {
	t.Parallel()
	p, tbl := setupKeyless(t)
	// The same rows in another physical order are the same multiset.
	pgtest.Exec(t, p.New.Pool, `CREATE TABLE audit_shuffled AS SELECT * FROM audit ORDER BY who DESC, at; TRUNCATE audit;
		INSERT INTO audit SELECT * FROM audit_shuffled; DROP TABLE audit_shuffled`)
	for _, m := range modes {
		r := run(t, p, tbl, m.opts)
		if r.Differences() != 0 || r.Rows != 203 || r.Fix != "" {
			t.Fatalf("%s: %+v, want 203 rows equal", m.name, r)
		}
	}
	if r := run(t, p, tbl, verify.Options{Changed: true}); r.Differences() != 0 || r.Kind != verify.KindFull {
		t.Fatalf("--changed: %+v, want a full comparison, equal", r)
	}
}

func TestKeylessTableDifferingByOneDuplicateVerifiesDifferent(t *testing.T) {
	t.Parallel()
	p, tbl := setupKeyless(t)
	// New lacks one of the two copies of user 7's row, and holds a fourth
	// copy of the NULL row: same distinct rows, different multisets.
	pgtest.Exec(t, p.New.Pool, `DELETE FROM audit WHERE ctid = (SELECT min(ctid) FROM audit WHERE who = 'user 7')`)
	pgtest.Exec(t, p.New.Pool, `INSERT INTO audit VALUES (NULL, NULL, NULL, NULL)`)
	for _, m := range modes {
		r := run(t, p, tbl, m.opts)
		if r.Missing != 1 || r.Extra != 1 || r.Different != 0 {
			t.Fatalf("%s: missing %d, extra %d, different %d, want 1, 1, 0", m.name, r.Missing, r.Extra, r.Different)
		}
		if len(r.Examples.Missing) != 1 || !slices.Contains(r.Examples.Missing[0], "user 7") {
			t.Errorf("%s: missing examples %v, want user 7's row", m.name, r.Examples.Missing)
		}
		if len(r.Examples.Extra) != 1 || !slices.Equal(r.Examples.Extra[0], []string{"NULL", "NULL", "NULL", "NULL"}) {
			t.Errorf("%s: extra examples %v, want the NULL row", m.name, r.Examples.Extra)
		}
		if !strings.Contains(r.Fix, "pgshift backfill --restart --table audit --copy-whole audit") {
			t.Errorf("%s: fix %q, want the backfill that copies audit whole again", m.name, r.Fix)
		}
	}
	// A changed value is one row missing and one extra, never "different".
	pgtest.Exec(t, p.Old.Pool, `UPDATE audit SET amount = 0 WHERE ctid = (SELECT min(ctid) FROM audit WHERE who = 'user 50')`)
	r := run(t, p, tbl, verify.Options{Buckets: 64})
	if r.Missing != 2 || r.Extra != 2 || r.Different != 0 {
		t.Fatalf("after a changed row: missing %d, extra %d, different %d, want 2, 2, 0", r.Missing, r.Extra, r.Different)
	}
}

// --repair cannot name a keyless table's rows in a repair log: it logs
// nothing and says to copy the table whole again.
func TestKeylessTableRepairLogsNothingAndNamesTheWholeCopy(t *testing.T) {
	t.Parallel()
	p, tbl := setupKeyless(t) // pgshift not installed: logging a row would fail
	pgtest.Exec(t, p.New.Pool, `DELETE FROM audit WHERE who = 'user 3'`)
	r := run(t, p, tbl, verify.Options{Repair: true})
	if r.Missing != 2 || r.Logged != 0 || !strings.Contains(r.Fix, "copy it whole again") {
		t.Fatalf("--repair: %+v, want 2 missing, nothing logged, the whole copy named", r)
	}
}

// Rows in more buckets than a bucket list is worth filtering by are counted
// unfiltered: every row of old's 6000, none on new.
func TestKeylessTableEmptyOnNewCountsEveryRowMissing(t *testing.T) {
	t.Parallel()
	p, tbl := setupKeyless(t)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO audit (who) SELECT 'bulk ' || i FROM generate_series(1, 5797) AS i`)
	pgtest.Exec(t, p.New.Pool, `TRUNCATE audit`)
	r := run(t, p, tbl, verify.Options{})
	if r.Missing != 6000 || r.Extra != 0 || r.ChunksDiffering <= 4096 || len(r.Examples.Missing) != 5 {
		t.Fatalf("%+v, want 6000 rows missing on new over more than 4096 buckets, 5 examples", r)
	}
}
