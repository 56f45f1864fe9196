package rowsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgshift/pgshift"
)

// CopyKeys makes the rows of table t with the given primary keys on dst equal
// to those on src: a key src holds is inserted into dst, or updated there
// (every non-key column but GENERATED ALWAYS identities, which PostgreSQL
// keeps), a key src lacks is deleted from dst. Each key holds
// the key columns' values in text form in key order (KeyText makes them;
// the repair log stores them so). All keys take one query on each side.
//
// upserted counts rows inserted or changed on dst (a row dst already holds
// unchanged is not written again); deleted counts rows removed from dst.
func CopyKeys(ctx context.Context, src, dst pgshift.Querier, t *Table, keys [][]string) (upserted, deleted int, err error) {
	src, dst = InSession(src), InSession(dst)
	if len(keys) == 0 {
		return 0, 0, nil
	}
	keyArgs, err := t.keyColumnsOf(keys)
	if err != nil {
		return 0, 0, err
	}
	values, err := readRows(ctx, src, t, keyArgs)
	if err != nil {
		return 0, 0, fmt.Errorf("copy %s: read source: %w", t, err)
	}
	args := append(values, keyArgs...)
	if err := dst.QueryRow(ctx, t.writeSQL(), args...).Scan(&upserted, &deleted); err != nil {
		return 0, 0, fmt.Errorf("copy %s: write destination (%d keys, first %v): %w", t, len(keys), keys[0], err)
	}
	return upserted, deleted, nil
}

// keyColumnsOf transposes keys into one text array per key column, the
// parameters of a key set (see keySet).
func (t *Table) keyColumnsOf(keys [][]string) ([]any, error) {
	cols := make([][]string, len(t.Key))
	for i := range cols {
		cols[i] = make([]string, len(keys))
	}
	for r, k := range keys {
		if len(k) != len(t.Key) {
			return nil, fmt.Errorf("copy %s: key %v has %d values, the primary key has %d columns", t, k, len(k), len(t.Key))
		}
		for i, v := range k {
			cols[i][r] = v
		}
	}
	args := make([]any, len(cols))
	for i, c := range cols {
		args[i] = c
	}
	return args, nil
}

// keySet is a FROM item of the keys given as text arrays in parameters
// $first..: a relation alias(k1, k2, ...) of the key values cast to the key
// columns' types.
func (t *Table) keySet(first int, alias string) string {
	var arrays, casts []string
	for i, c := range t.Key {
		arrays = append(arrays, fmt.Sprintf("pg_catalog.unnest($%d::text[])", first+i))
		casts = append(casts, fmt.Sprintf("u.k%d::%s AS k%d", i+1, c.Type, i+1))
	}
	return fmt.Sprintf("(SELECT %s FROM ROWS FROM (%s) AS u(%s)) AS %s",
		strings.Join(casts, ", "), strings.Join(arrays, ", "), numbered("k", len(t.Key)), alias)
}

// keyMatch is the condition that row alias a has the key of key set alias k.
func (t *Table) keyMatch(a, k string) string {
	var conds []string
	for i, c := range t.Key {
		conds = append(conds, fmt.Sprintf("%s.%s OPERATOR(pg_catalog.=) %s.k%d", a, c.ident(), k, i+1))
	}
	return strings.Join(conds, " AND ")
}

// numbered is "p1, p2, ..., pn".
func numbered(prefix string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = prefix + strconv.Itoa(i+1)
	}
	return strings.Join(parts, ", ")
}

// textColumns is "a.c1::text, a.c2::text, ..." of the table's columns.
func (t *Table) textColumns(alias string) string { return columnList(t.Columns, alias, "::text") }

// readRows reads the rows of t with the keys in keyArgs from q, in text
// form, transposed: one text array per column (nil elements for NULLs).
func readRows(ctx context.Context, q pgshift.Querier, t *Table, keyArgs []any) ([]any, error) {
	sql := fmt.Sprintf("SELECT %s FROM %s AS t JOIN %s ON %s",
		t.textColumns("t"), t.Ident(), t.keySet(1, "k"), t.keyMatch("t", "k"))
	rows, err := q.Query(ctx, sql, keyArgs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := make([][]*string, len(t.Columns))
	for rows.Next() {
		for i, raw := range rows.RawValues() {
			if raw == nil {
				cols[i] = append(cols[i], nil)
				continue
			}
			s := string(raw)
			cols[i] = append(cols[i], &s)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]any, len(cols))
	for i, c := range cols {
		if c == nil {
			c = []*string{}
		}
		out[i] = c
	}
	return out, nil
}

// writeSQL upserts the rows given as one text array per column ($1..$n) and
// deletes the keys given after them that are not among those rows; it
// returns (upserted, deleted).
func (t *Table) writeSQL() string {
	n := len(t.Columns)
	var arrays, casts []string
	for i, c := range t.Columns {
		arrays = append(arrays, fmt.Sprintf("pg_catalog.unnest($%d::text[])", i+1))
		casts = append(casts, fmt.Sprintf("s.c%d::%s", i+1, c.Type))
	}
	var keyOfSrc []string
	for _, k := range t.Key {
		for i, c := range t.Columns {
			if c.Name == k.Name {
				keyOfSrc = append(keyOfSrc, fmt.Sprintf("s.c%d::%s", i+1, c.Type))
			}
		}
	}
	var nonKey []Column
	for _, c := range t.Columns {
		if !t.isKey(c.Name) && !c.AlwaysIdentity {
			nonKey = append(nonKey, c)
		}
	}
	conflict := "DO NOTHING"
	if len(nonKey) > 0 {
		var sets []string
		for _, c := range nonKey {
			sets = append(sets, fmt.Sprintf("%s = EXCLUDED.%s", c.ident(), c.ident()))
		}
		conflict = fmt.Sprintf("DO UPDATE SET %s WHERE (%s) IS DISTINCT FROM (%s)",
			strings.Join(sets, ", "), columnList(nonKey, "d", "::text"), columnList(nonKey, "EXCLUDED", "::text"))
	}
	return fmt.Sprintf(`WITH s AS (SELECT * FROM ROWS FROM (%[1]s) AS s(%[2]s)),
ins AS (INSERT INTO %[3]s AS d (%[4]s) OVERRIDING SYSTEM VALUE SELECT %[5]s FROM s ON CONFLICT (%[6]s) %[7]s RETURNING 1),
del AS (DELETE FROM %[3]s AS d USING %[8]s WHERE %[9]s AND NOT EXISTS (SELECT 1 FROM s WHERE (%[10]s) OPERATOR(pg_catalog.=) (%[11]s)) RETURNING 1)
SELECT (SELECT count(*) FROM ins)::int, (SELECT count(*) FROM del)::int`,
		strings.Join(arrays, ", "), numbered("c", n), t.Ident(), columnList(t.Columns, "", ""),
		strings.Join(casts, ", "), t.keyList(""), conflict,
		t.keySet(n+1, "k"), t.keyMatch("d", "k"), strings.Join(keyOfSrc, ", "), numbered("k.k", len(t.Key)))
}

func (t *Table) isKey(name string) bool {
	for _, k := range t.Key {
		if k.Name == name {
			return true
		}
	}
	return false
}
