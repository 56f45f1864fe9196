package backfill_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/verify"
)

// A text key sorts by ICU's rules on old ("a" < "B" < "c") and in byte
// order on new ("B" < "a" < "c"): ranges planned on old would hold other
// keys on new. Backfill and chunked verify compare keys in byte order on
// both sides then, and copy and compare every row; where the collations
// match they keep the key's own order (and its index).
func TestKeysUnderDifferentCollationsOnEachSide(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	pgtest.Exec(t, p.Old.Pool, `CREATE TABLE names (name text COLLATE "und-x-icu" PRIMARY KEY, n int)`)
	pgtest.Exec(t, p.New.Pool, `CREATE TABLE names (name text COLLATE "C" PRIMARY KEY, n int)`)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO names SELECT chr(65 + i % 26 + (i % 2) * 32) || i, i FROM generate_series(1, 300) AS i`)
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "names")
	if err != nil {
		t.Fatal(err)
	}
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{ChunkSize: 7})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	o, n := pgtest.Dump(t, p.Old.Pool, "names"), pgtest.Dump(t, p.New.Pool, "names")
	if res[0].Inserted != 300 || !slices.Equal(o, n) {
		t.Fatalf("backfill inserted %d of 300 rows; old %d rows, new %d, want equal", res[0].Inserted, len(o), len(n))
	}
	pgtest.Exec(t, p.New.Pool, `UPDATE names SET n = -1 WHERE name IN ('b1', 'C2')`)
	vr, err := verify.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, verify.Options{Buckets: -1, ChunkSize: 9, RecheckDelay: time.Millisecond})
	if err != nil || vr[0].Err != nil {
		t.Fatal(err, vr[0].Err)
	}
	if vr[0].Rows != 300 || vr[0].Different != 2 || vr[0].Missing+vr[0].Extra != 0 {
		t.Fatalf("chunked verify: %+v, want 300 rows compared and exactly the 2 changed ones different", vr[0])
	}

	unmatched, err := rowsync.AlignKeyOrder(ctx, p.New.Pool, tbl)
	if err != nil || !tbl.KeyOrderC || len(unmatched) != 1 || !strings.HasPrefix(unmatched[0], "name (i:und:153") {
		t.Fatalf("AlignKeyOrder = %q, %v, KeyOrderC %v; want the name column named, byte order", unmatched, err, tbl.KeyOrderC)
	}
	same, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "names")
	if err != nil {
		t.Fatal(err)
	}
	if unmatched, err := rowsync.AlignKeyOrder(ctx, p.Old.Pool, same); err != nil || same.KeyOrderC || len(unmatched) != 0 {
		t.Fatalf("AlignKeyOrder with the same collation = %q, %v, KeyOrderC %v; want the key's own order", unmatched, err, same.KeyOrderC)
	}
}
