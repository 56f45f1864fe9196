package rowsync

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift"
)

// bucketOf is the SQL bucket of alias's row among buckets (a power of
// two, the parameter $n): a 64-bit hash of its key (its text form, or with
// t.TypedHash its values as rowHash hashes them), masked; of a keyless
// table, its rowHash masked. Both sides compute the same bucket for the
// same key (or row), whatever their physical order.
func (t *Table) bucketOf(alias string, n int) string {
	if t.Keyless() {
		return fmt.Sprintf("(%s & ($%d::bigint - 1))", t.rowHash(alias), n)
	}
	key := fmt.Sprintf("pg_catalog.hashtextextended(%s::text, 8)", t.keyArray(alias))
	if t.TypedHash {
		key = fmt.Sprintf("pg_catalog.hash_record_extended(%s, 8)", typedRow(t.Key, alias))
	}
	return fmt.Sprintf("(%s & ($%d::bigint - 1))", key, n)
}

// checkBuckets accepts a power of two from 2 up.
func checkBuckets(buckets int) error {
	if buckets < 2 || buckets&(buckets-1) != 0 {
		return fmt.Errorf("buckets %d: want a power of two, at least 2", buckets)
	}
	return nil
}

// BucketHashes returns the Summary of each bucket of t's rows that holds
// any: rows go to buckets (a power of two) by a hash of their key, so the
// server reads the table in one sequential pass, in any order, and groups
// it by bucket; no index is walked and nothing is sorted. Two sides whose
// rows are equal give equal summaries; a difference shows in the bucket
// of its key (of a keyless table: of the row).
func BucketHashes(ctx context.Context, q pgshift.Querier, t *Table, buckets int) (map[int64]Summary, error) {
	q = InSession(q)
	if err := checkBuckets(buckets); err != nil {
		return nil, err
	}
	sql := fmt.Sprintf(`SELECT b, count(*), %s FROM (SELECT %s AS b, %s AS h FROM %s AS t) AS s GROUP BY b`,
		chunkHash("s.h"), t.bucketOf("t", 1), t.rowHash("t"), t.Ident())
	rows, err := q.Query(ctx, sql, buckets)
	if err != nil {
		return nil, fmt.Errorf("%s: bucket hashes: %w", t, err)
	}
	defer rows.Close()
	out := map[int64]Summary{}
	for rows.Next() {
		var b int64
		var s Summary
		if err := rows.Scan(&b, &s.Rows, &s.Hash); err != nil {
			return nil, fmt.Errorf("%s: bucket hashes: %w", t, err)
		}
		out[b] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: bucket hashes: %w", t, err)
	}
	return out, nil
}

// RowHashesInBuckets returns the key and hash of every row of t in the
// given buckets (of BucketHashes with the same count): the drill-down into
// buckets whose summaries differ. The server reads the table once more but
// renders and hashes only the rows of those buckets.
func RowHashesInBuckets(ctx context.Context, q pgshift.Querier, t *Table, buckets int, which []int64) ([]RowHash, error) {
	q = InSession(q)
	if err := checkBuckets(buckets); err != nil {
		return nil, err
	}
	if len(which) == 0 {
		return nil, nil
	}
	sql := fmt.Sprintf(`SELECT %s, md5(%s) FROM %s AS t WHERE %s = ANY($2)`,
		t.keyArray("t"), t.rowText("t"), t.Ident(), t.bucketOf("t", 1))
	out, err := collectRowHashes(ctx, q, sql, buckets, which)
	if err != nil {
		return nil, fmt.Errorf("%s: rows of %d buckets: %w", t, len(which), err)
	}
	return out, nil
}
