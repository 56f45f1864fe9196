package rowsync

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/pgshift/pgshift"
)

// MultisetDiff is how two sides' rows of a keyless table differ as
// multisets: a row one side holds more times than the other counts as many
// times as it is in excess.
type MultisetDiff struct {
	// Missing counts rows src holds more times than dst (missing on dst),
	// Extra rows dst holds more times than src.
	Missing, Extra int64
	// MissingHashes and ExtraHashes are the row hashes (rowHash) of up to
	// the asked-for number of such rows of each kind, for RowsOfHashes.
	MissingHashes, ExtraHashes []int64
}

// countsUnfiltered is the number of buckets beyond which DiffMultisets
// counts every row rather than filter by bucket: a long list of buckets
// costs more per row than the rows it leaves out save.
const countsUnfiltered = 4096

// DiffMultisets compares the rows of keyless table t on src and dst as
// multisets, in the given buckets of BucketHashes (with the same count):
// both servers count their rows per distinct row hash (rowHash), sorted by
// it, and stream the counts at once; the two sorted streams are merged as
// they arrive, so memory stays the same whatever the table's size. A row
// held k more times on one side is k differences. examples bounds the hashes
// kept of each kind. Distinct rows whose 64-bit hashes collide are counted
// as one (the same trade-off as the chunk hashes').
func DiffMultisets(ctx context.Context, src, dst pgshift.Querier, t *Table, buckets int, which []int64, examples int) (MultisetDiff, error) {
	var d MultisetDiff
	if err := checkBuckets(buckets); err != nil {
		return d, err
	}
	cond, args := t.bucketOf("t", 1)+" = ANY($2)", []any{buckets, which}
	if len(which) > countsUnfiltered {
		cond, args = "true", nil
	}
	sql := fmt.Sprintf(`SELECT x.h, count(*) FROM (SELECT %s AS h FROM %s AS t WHERE %s) AS x GROUP BY x.h ORDER BY x.h`,
		t.rowHash("t"), t.Ident(), cond)
	var sides [2]*countCursor
	var g errgroup.Group
	for i, q := range []pgshift.Querier{src, dst} {
		g.Go(func() error {
			rows, err := InSession(q).Query(ctx, sql, args...)
			if err != nil {
				return err
			}
			sides[i] = &countCursor{rows: rows}
			return sides[i].next()
		})
	}
	err := g.Wait()
	for _, c := range sides {
		if c != nil {
			defer c.rows.Close()
		}
	}
	if err != nil {
		return d, fmt.Errorf("%s: count rows: %w", t, err)
	}
	o, n := sides[0], sides[1]
	excess := func(total *int64, hashes *[]int64, h, k int64) {
		*total += k
		if len(*hashes) < examples {
			*hashes = append(*hashes, h)
		}
	}
	for (o.ok || n.ok) && err == nil {
		switch {
		case !n.ok || o.ok && o.cur.hash < n.cur.hash:
			excess(&d.Missing, &d.MissingHashes, o.cur.hash, o.cur.count)
			err = o.next()
		case !o.ok || n.cur.hash < o.cur.hash:
			excess(&d.Extra, &d.ExtraHashes, n.cur.hash, n.cur.count)
			err = n.next()
		default:
			switch k := o.cur.count - n.cur.count; {
			case k > 0:
				excess(&d.Missing, &d.MissingHashes, o.cur.hash, k)
			case k < 0:
				excess(&d.Extra, &d.ExtraHashes, n.cur.hash, -k)
			}
			if err = o.next(); err == nil {
				err = n.next()
			}
		}
	}
	if err != nil {
		return d, fmt.Errorf("%s: count rows: %w", t, err)
	}
	return d, nil
}

// countCursor is one side's stream of row counts, at its current row.
type countCursor struct {
	rows pgx.Rows
	ok   bool
	cur  struct{ hash, count int64 }
}

func (c *countCursor) next() error {
	if c.ok = c.rows.Next(); c.ok {
		return c.rows.Scan(&c.cur.hash, &c.cur.count)
	}
	return c.rows.Err()
}

// RowsOfHashes returns one row of t for each of hashes that a row on q
// hashes to (rowHash), as the text of its stored columns in table order
// (NULL for a null): the examples of a keyless table's differences, whose
// only identity is the whole row.
func RowsOfHashes(ctx context.Context, q pgshift.Querier, t *Table, hashes []int64) (map[int64][]string, error) {
	out := map[int64][]string{}
	if len(hashes) == 0 {
		return out, nil
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = fmt.Sprintf("coalesce(t.%s::text, 'NULL')", c.ident())
	}
	sql := fmt.Sprintf(`SELECT DISTINCT ON (x.h) x.h, x.r FROM (SELECT %s AS h, ARRAY[%s]::text[] AS r FROM %s AS t) AS x
		WHERE x.h = ANY($1) ORDER BY x.h`, t.rowHash("t"), strings.Join(cols, ", "), t.Ident())
	rows, err := InSession(q).Query(ctx, sql, hashes)
	if err != nil {
		return nil, fmt.Errorf("%s: rows of %d hashes: %w", t, len(hashes), err)
	}
	var h int64
	var r []string
	if _, err := pgx.ForEachRow(rows, []any{&h, &r}, func() error {
		out[h] = slices.Clone(r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s: rows of %d hashes: %w", t, len(hashes), err)
	}
	return out, nil
}
