package rowsync_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// walk returns the chunks of size rows of tbl on q, each with its Summary.
func walk(t *testing.T, q pgshift.Querier, tbl *rowsync.Table, size int) ([]rowsync.Range, []rowsync.Summary) {
	t.Helper()
	var ranges []rowsync.Range
	var sums []rowsync.Summary
	var after []string
	for {
		r, s, err := rowsync.NextChunk(context.Background(), q, tbl, after, size, true)
		if err != nil {
			t.Fatal(err)
		}
		ranges, sums = append(ranges, r), append(sums, s)
		if r.Last == nil {
			return ranges, sums
		}
		after = r.Last
	}
}

func TestChunksWalkKeysInOrderAndHashLikeTheOtherSide(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	ctx := context.Background()
	if _, _, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, allKeys(t, p.Old.Pool, tbl)); err != nil {
		t.Fatal(err)
	}
	ranges, sums := walk(t, p.Old.Pool, tbl, 1)
	var got []string
	for _, r := range ranges {
		got = append(got, fmt.Sprint(r.Last))
	}
	// "Beta Co" < "acme" in the C collation the test servers use.
	if want := []string{"[Beta Co 1]", "[Beta Co 2]", "[acme 1]", "[acme 2]", "[]"}; !slices.Equal(got, want) {
		t.Fatalf("chunk ends = %q, want %q", got, want)
	}
	for i, r := range ranges {
		s, err := rowsync.HashRange(ctx, p.New.Pool, tbl, r)
		if err != nil {
			t.Fatal(err)
		}
		if s != sums[i] {
			t.Errorf("chunk %v: new %+v, old %+v; want equal", r, s, sums[i])
		}
	}
	whole, err := rowsync.HashRange(ctx, p.New.Pool, tbl, rowsync.Range{})
	if err != nil || whole.Rows != 4 {
		t.Errorf("whole table: %+v, %v; want 4 rows", whole, err)
	}
}

func TestDrillDownFindsMissingExtraAndDifferentRows(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	ctx := context.Background()
	if _, _, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, allKeys(t, p.Old.Pool, tbl)); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, p.New.Pool, `UPDATE `+tbl.Ident()+` SET tags = '{"a b"}' WHERE "Tenant" = 'acme' AND "line No" = 1;
		DELETE FROM `+tbl.Ident()+` WHERE "Tenant" = 'Beta Co' AND "line No" = 2;
		INSERT INTO `+tbl.Ident()+` ("Tenant", "line No") VALUES ('zeta', 1)`)
	ranges, sums := walk(t, p.Old.Pool, tbl, 2)
	var d rowsync.Diff
	for i, r := range ranges {
		s, err := rowsync.HashRange(ctx, p.New.Pool, tbl, r)
		if err != nil {
			t.Fatal(err)
		}
		if s == sums[i] {
			continue
		}
		src, err := rowsync.RowHashes(ctx, p.Old.Pool, tbl, r)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := rowsync.RowHashes(ctx, p.New.Pool, tbl, r)
		if err != nil {
			t.Fatal(err)
		}
		c := rowsync.DiffRows(src, dst)
		d.Missing, d.Extra, d.Different = append(d.Missing, c.Missing...), append(d.Extra, c.Extra...), append(d.Different, c.Different...)
	}
	if got := fmt.Sprint(d.Missing, d.Extra, d.Different); got != "[[Beta Co 2]] [[zeta 1]] [[acme 1]]" {
		t.Fatalf("missing, extra, different = %s", got)
	}
	byKey, err := rowsync.RowHashesOf(ctx, p.New.Pool, tbl, d.Keys())
	if err != nil || len(byKey) != 2 {
		t.Fatalf("RowHashesOf found %d rows (err %v), want the 2 new has", len(byKey), err)
	}
	if _, _, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, d.Keys()); err != nil {
		t.Fatal(err)
	}
	if o, n := pgtest.Dump(t, p.Old.Pool, tbl.Ident()), pgtest.Dump(t, p.New.Pool, tbl.Ident()); !slices.Equal(o, n) {
		t.Fatalf("sides differ after repair:\nold %q\nnew %q", o, n)
	}
}
