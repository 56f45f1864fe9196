package rowsync

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// OwnKeys returns the keys of t's rows in r that the transaction q runs in
// has written (their xmin is that transaction), and the transaction's id,
// for DeleteOwnKeys after it commits.
func OwnKeys(ctx context.Context, q Querier, t *Table, r Range) (keys [][]string, xid string, err error) {
	if err := q.QueryRow(ctx, "SELECT pg_current_xact_id()::xid::text").Scan(&xid); err != nil {
		return nil, "", fmt.Errorf("%s: transaction id: %w", t, err)
	}
	cond, args := t.where("t", r, 2)
	sql := fmt.Sprintf("SELECT %s FROM %s AS t WHERE t.xmin = $1::xid AND %s", t.keyArray("t"), t.Ident(), cond)
	rows, err := q.Query(ctx, sql, append([]any{xid}, args...)...)
	if err != nil {
		return nil, "", fmt.Errorf("%s: keys written in %s: %w", t, r, err)
	}
	keys, err = pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return nil, "", fmt.Errorf("%s: keys written in %s: %w", t, r, err)
	}
	return keys, xid, nil
}

// MissingKeys returns those of keys that q holds no row of t for.
func MissingKeys(ctx context.Context, q Querier, t *Table, keys [][]string) ([][]string, error) {
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

// DeleteOwnKeys deletes from q the rows of t with the given keys that
// transaction xid wrote and nothing has changed since (their xmin is still
// xid): a row another writer touched meanwhile is that writer's business.
func DeleteOwnKeys(ctx context.Context, q Querier, t *Table, keys [][]string, xid string) (int64, error) {
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
