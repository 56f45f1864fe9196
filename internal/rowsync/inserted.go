package rowsync

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
)

// CurrentXID is the id of the transaction q runs in, for InsertedKeys and
// DeleteInsertedKeys after it commits.
func CurrentXID(ctx context.Context, q pgshift.Querier) (string, error) {
	var xid string
	if err := q.QueryRow(ctx, "SELECT pg_current_xact_id()::xid::text").Scan(&xid); err != nil {
		return "", fmt.Errorf("transaction id: %w", err)
	}
	return xid, nil
}

// InsertedKeys returns the keys of t's rows in r that transaction xid
// inserted and nothing has changed since (their xmin is still xid): the rows
// one backfill chunk's transaction put there itself.
func InsertedKeys(ctx context.Context, q pgshift.Querier, t *Table, r Range, xid string) ([][]string, error) {
	q = InSession(q)
	cond, args := t.where("t", r, 2)
	sql := fmt.Sprintf("SELECT %s FROM %s AS t WHERE t.xmin = $1::xid AND %s", t.keyArray("t"), t.Ident(), cond)
	rows, err := q.Query(ctx, sql, append([]any{xid}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: keys written in %s: %w", t, r, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return nil, fmt.Errorf("%s: keys written in %s: %w", t, r, err)
	}
	return keys, nil
}

// KeyFingerprint summarises the set of t's keys in r on q: their number and
// a combination of a 64-bit hash of each (with t.TypedHash, the exclusive or
// of the key values' own hashes; else the sum of their text's). Two sides
// with the same fingerprint hold the same keys in r, but for a hash
// collision (about 2^-64). The typed form costs about half as much: no key
// is rendered as text, and no sum is kept in numeric.
func KeyFingerprint(ctx context.Context, q pgshift.Querier, t *Table, r Range) (string, error) {
	q = InSession(q)
	cond, args := t.where("t", r, 1)
	agg := fmt.Sprintf("coalesce(sum(pg_catalog.hashtextextended(%s::text, 0)::numeric), 0)", t.keyArray("t"))
	if t.TypedHash {
		agg = fmt.Sprintf("coalesce(pg_catalog.bit_xor(pg_catalog.hash_record_extended(%s, 0)), 0)", typedRow(t.Key, "t"))
	}
	sql := fmt.Sprintf("SELECT count(*)::text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) %s::text FROM %s AS t WHERE %s",
		agg, t.Ident(), cond)
	var fp string
	if err := q.QueryRow(ctx, sql, args...).Scan(&fp); err != nil {
		return "", fmt.Errorf("%s: key fingerprint of %s: %w", t, r, err)
	}
	return fp, nil
}

// MissingKeys returns those of keys that q holds no row of t for.
func MissingKeys(ctx context.Context, q pgshift.Querier, t *Table, keys [][]string) ([][]string, error) {
	q = InSession(q)
	if len(keys) == 0 {
		return nil, nil
	}
	keyArgs, err := t.keyColumnsOf(keys)
	if err != nil {
		return nil, err
	}
	var back []string
	for i := range t.Key {
		back = append(back, fmt.Sprintf("k.k%d::text", i+1))
	}
	sql := fmt.Sprintf("SELECT ARRAY[%s] FROM %s WHERE NOT EXISTS (SELECT 1 FROM %s AS t WHERE %s)",
		strings.Join(back, ", "), t.keySet(1, "k"), t.Ident(), t.keyMatch("t", "k"))
	rows, err := q.Query(ctx, sql, keyArgs...)
	if err != nil {
		return nil, fmt.Errorf("%s: missing keys: %w", t, err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return nil, fmt.Errorf("%s: missing keys: %w", t, err)
	}
	return missing, nil
}

// DeleteInsertedKeys deletes from q the rows of t with the given keys that
// transaction xid wrote and nothing has changed since (their xmin is still
// xid): a row another writer touched meanwhile is that writer's business.
func DeleteInsertedKeys(ctx context.Context, q pgshift.Querier, t *Table, keys [][]string, xid string) (int64, error) {
	q = InSession(q)
	if len(keys) == 0 {
		return 0, nil
	}
	keyArgs, err := t.keyColumnsOf(keys)
	if err != nil {
		return 0, err
	}
	sql := fmt.Sprintf("DELETE FROM %s AS t USING %s WHERE %s AND t.xmin = $1::xid",
		t.Ident(), t.keySet(2, "k"), t.keyMatch("t", "k"))
	tag, err := q.Exec(ctx, sql, append([]any{xid}, keyArgs...)...)
	if err != nil {
		return 0, fmt.Errorf("%s: delete %d keys: %w", t, len(keys), err)
	}
	return tag.RowsAffected(), nil
}
