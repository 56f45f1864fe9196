package rowsync

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
)

// CopyKeys makes the rows of table t with the given primary keys on dst equal
// to those on src: a key src lacks is deleted from dst, then a key src holds
// is inserted into dst, or updated there (every non-key column but GENERATED
// ALWAYS identities, which PostgreSQL keeps). Deletes go first, so a row
// that takes over a unique value from a deleted one arrives after it is
// gone. Each key holds the key columns' values in text form in key order
// (KeyText makes them; the repair log stores them so). It takes one read
// and two writes; give it a transaction as dst for all or nothing.
//
// upserted counts rows inserted or changed on dst (a row dst already holds
// unchanged is not written again); deleted counts rows removed from dst.
// The repair path copies through ReadKeys and Apply instead, which isolate
// a failing row and follow foreign keys.
func CopyKeys(ctx context.Context, src, dst pgshift.Querier, t *Table, keys [][]string) (upserted, deleted int, err error) {
	if len(keys) == 0 {
		return 0, 0, nil
	}
	s, err := ReadKeys(ctx, src, t, keys)
	if err != nil {
		return 0, 0, err
	}
	if deleted, err = s.Delete(ctx, dst, s.Absent()); err != nil {
		return 0, deleted, err
	}
	upserted, err = s.Upsert(ctx, dst, s.Present())
	return upserted, deleted, err
}

// Source is what the source side holds of a set of keys of one table, read
// once (ReadKeys) and written to a destination in parts: deletes apart from
// upserts, a few keys or one at a time.
type Source struct {
	t    *Table
	keys [][]string
	rows [][]*string // per key: its row's columns in text form; nil where src lacks the key
}

// ReadKeys reads the rows of t with the given keys (as CopyKeys takes them)
// from src.
func ReadKeys(ctx context.Context, src pgshift.Querier, t *Table, keys [][]string) (*Source, error) {
	keyArgs, err := t.keyColumnsOf(keys)
	if err != nil {
		return nil, err
	}
	s := &Source{t: t, keys: keys, rows: make([][]*string, len(keys))}
	if len(keys) == 0 {
		return s, nil
	}
	if err := s.read(ctx, InSession(src), keyArgs); err != nil {
		return nil, fmt.Errorf("copy %s: read source: %w", t, err)
	}
	return s, nil
}

// Table is the table the rows are of.
func (s *Source) Table() *Table { return s.t }

// Key is the i-th key, as ReadKeys was given it.
func (s *Source) Key(i int) []string { return s.keys[i] }

// Present lists the indexes of the keys the source holds: rows to upsert.
func (s *Source) Present() []int { return s.indexes(true) }

// Absent lists the indexes of the keys the source lacks: rows to delete.
func (s *Source) Absent() []int { return s.indexes(false) }

func (s *Source) indexes(present bool) []int {
	var out []int
	for i, r := range s.rows {
		if (r != nil) == present {
			out = append(out, i)
		}
	}
	return out
}

// Delete deletes the keys idx (of keys the source lacks) from dst and
// returns how many rows it removed.
func (s *Source) Delete(ctx context.Context, dst pgshift.Querier, idx []int) (int, error) {
	if len(idx) == 0 {
		return 0, nil
	}
	keyArgs, err := s.t.keyColumnsOf(s.pick(idx))
	if err != nil {
		return 0, err
	}
	sql := fmt.Sprintf("DELETE FROM %s AS d USING %s WHERE %s", s.t.Ident(), s.t.keySet(1, "k"), s.t.keyMatch("d", "k"))
	tag, err := InSession(dst).Exec(ctx, sql, keyArgs...)
	if err != nil {
		return 0, fmt.Errorf("copy %s: delete on destination (%d keys, first %v): %w", s.t, len(idx), s.keys[idx[0]], err)
	}
	return int(tag.RowsAffected()), nil
}

// Upsert inserts or updates the source's rows of keys idx (of keys the
// source holds) on dst and returns how many rows it wrote.
func (s *Source) Upsert(ctx context.Context, dst pgshift.Querier, idx []int) (int, error) {
	if len(idx) == 0 {
		return 0, nil
	}
	tag, err := InSession(dst).Exec(ctx, s.t.upsertSQL(), s.columns(idx)...)
	if err != nil {
		return 0, fmt.Errorf("copy %s: write destination (%d keys, first %v): %w", s.t, len(idx), s.keys[idx[0]], err)
	}
	return int(tag.RowsAffected()), nil
}

// Replace deletes the rows of keys idx (of keys the source holds) from dst
// and inserts the source's rows in their place, in one statement: rows that
// trade unique values among themselves (a swap), which no order of upserts
// can write, arrive together. It refuses a table that foreign keys with an
// ON DELETE action reference, since the delete would reach the referencing
// rows; foreign keys without one (NO ACTION) are checked after the
// statement, when the rows are back.
func (s *Source) Replace(ctx context.Context, dst pgshift.Querier, idx []int) (int, error) {
	if len(idx) == 0 {
		return 0, nil
	}
	var actions bool
	if err := dst.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
		WHERE contype = 'f' AND confrelid = $1::regclass AND confdeltype IN ('c', 'n', 'd'))`, s.t.Ident()).Scan(&actions); err != nil {
		return 0, fmt.Errorf("copy %s: read foreign keys on destination: %w", s.t, err)
	}
	if actions {
		return s.clearAndUpsert(ctx, dst, idx)
	}
	tag, err := InSession(dst).Exec(ctx, s.t.replaceSQL(), s.columns(idx)...)
	if err != nil {
		return 0, fmt.Errorf("copy %s: replace on destination (%d keys, first %v): %w", s.t, len(idx), s.keys[idx[0]], err)
	}
	return int(tag.RowsAffected()), nil
}

// clearAndUpsert writes rows that trade unique values on a table whose rows
// cannot be deleted and inserted again (foreign keys with an ON DELETE action
// reference it): it sets the columns of the table's unique constraints to
// NULL in the destination's rows of keys idx, which frees the values, and
// upserts the source's rows, in one transaction (the caller's). That needs
// every such column to allow NULL, and no unique index on expressions or
// with NULLS NOT DISTINCT; otherwise it says so.
func (s *Source) clearAndUpsert(ctx context.Context, dst pgshift.Querier, idx []int) (int, error) {
	var cols []string
	var clearable bool
	// indnullsnotdistinct exists from PostgreSQL 15 on: read through jsonb,
	// so older servers read it as absent.
	err := dst.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT a.attname::text ORDER BY a.attname::text), '{}'),
		coalesce(bool_and(NOT a.attnotnull), true) AND NOT EXISTS (
			SELECT 1 FROM pg_catalog.pg_index AS e
			WHERE e.indrelid = $1::regclass AND e.indisunique AND NOT e.indisprimary
			  AND e.indexrelid IS DISTINCT FROM $2::regclass
			  AND (e.indexprs IS NOT NULL OR coalesce((pg_catalog.to_jsonb(e) ->> 'indnullsnotdistinct')::boolean, false)))
		FROM pg_catalog.pg_index AS i
		JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey::int2[])
		WHERE i.indrelid = $1::regclass AND i.indisunique AND NOT i.indisprimary
		  AND i.indexrelid IS DISTINCT FROM $2::regclass`, s.t.Ident(), s.t.keyIndexIdent()).Scan(&cols, &clearable)
	if err != nil {
		return 0, fmt.Errorf("copy %s: read unique indexes on destination: %w", s.t, err)
	}
	if !clearable || len(cols) == 0 {
		return 0, fmt.Errorf("copy %s: cannot write %d rows that trade unique values: foreign keys with ON DELETE CASCADE, SET NULL or SET DEFAULT reference the table, so deleting them would change other rows, and a unique column does not allow NULL (or a unique index is on expressions or NULLS NOT DISTINCT), so the values cannot be freed first; copy them by hand (first %v)", s.t, len(idx), s.keys[idx[0]])
	}
	if _, err := InSession(dst).Exec(ctx, s.t.clearSQL(cols), s.columns(idx)...); err != nil {
		return 0, fmt.Errorf("copy %s: free unique values on destination (%d keys, first %v): %w", s.t, len(idx), s.keys[idx[0]], err)
	}
	return s.Upsert(ctx, dst, idx)
}

func (s *Source) pick(idx []int) [][]string {
	keys := make([][]string, len(idx))
	for i, k := range idx {
		keys[i] = s.keys[k]
	}
	return keys
}

// columns transposes the rows of keys idx into one text array per column,
// the parameters of upsertSQL and replaceSQL.
func (s *Source) columns(idx []int) []any {
	cols := make([][]*string, len(s.t.Columns))
	for c := range cols {
		cols[c] = make([]*string, len(idx))
		for i, k := range idx {
			cols[c][i] = s.rows[k][c]
		}
	}
	out := make([]any, len(cols))
	for i, c := range cols {
		out[i] = c
	}
	return out
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

// read reads the rows of the keys in keyArgs from q, in text form, into
// s.rows by the keys' positions.
func (s *Source) read(ctx context.Context, q pgshift.Querier, keyArgs []any) error {
	t := s.t
	var arrays, casts []string
	for i, c := range t.Key {
		arrays = append(arrays, fmt.Sprintf("pg_catalog.unnest($%d::text[])", i+1))
		casts = append(casts, fmt.Sprintf("u.k%d::%s AS k%d", i+1, c.Type, i+1))
	}
	sql := fmt.Sprintf("SELECT k.n::text, %s FROM %s AS t JOIN (SELECT %s, u.n FROM ROWS FROM (%s) WITH ORDINALITY AS u(%s, n)) AS k ON %s",
		t.textColumns("t"), t.Ident(), strings.Join(casts, ", "), strings.Join(arrays, ", "), numbered("k", len(t.Key)), t.keyMatch("t", "k"))
	rows, err := q.Query(ctx, sql, keyArgs...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		n, err := strconv.Atoi(string(raw[0]))
		if err != nil || n < 1 || n > len(s.keys) {
			return fmt.Errorf("key position %q out of range", raw[0])
		}
		row := make([]*string, len(raw)-1)
		for i, v := range raw[1:] {
			if v != nil {
				text := string(v)
				row[i] = &text
			}
		}
		s.rows[n-1] = row
	}
	return rows.Err()
}

// sourceRows is the FROM item s(c1, ..., cn) of rows given as one text
// array per column in $1..$n, and the casts of its columns back to their
// types.
func (t *Table) sourceRows() (from string, casts []string) {
	var arrays []string
	for i, c := range t.Columns {
		arrays = append(arrays, fmt.Sprintf("pg_catalog.unnest($%d::text[])", i+1))
		casts = append(casts, fmt.Sprintf("s.c%d::%s", i+1, c.Type))
	}
	return fmt.Sprintf("ROWS FROM (%s) AS s(%s)", strings.Join(arrays, ", "), numbered("c", len(t.Columns))), casts
}

// upsertSQL upserts the rows given as one text array per column ($1..$n).
func (t *Table) upsertSQL() string {
	from, casts := t.sourceRows()
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
	return fmt.Sprintf("INSERT INTO %s AS d (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s ON CONFLICT (%s) %s",
		t.Ident(), columnList(t.Columns, "", ""), strings.Join(casts, ", "), from, t.keyList(""), conflict)
}

// replaceSQL deletes the rows with the keys of the rows given as upsertSQL
// takes them, then inserts those rows: the insert reads the delete's count
// first, so the delete has run (and freed the unique values) before the
// first row is inserted.
func (t *Table) replaceSQL() string {
	from, casts := t.sourceRows()
	var keyOfSrc []string
	for _, k := range t.Key {
		for i, c := range t.Columns {
			if c.Name == k.Name {
				keyOfSrc = append(keyOfSrc, casts[i])
			}
		}
	}
	return fmt.Sprintf(`WITH s AS (SELECT * FROM %[1]s),
del AS (DELETE FROM %[2]s AS d USING s WHERE (%[3]s) OPERATOR(pg_catalog.=) (%[4]s) RETURNING 1)
INSERT INTO %[2]s (%[5]s) OVERRIDING SYSTEM VALUE SELECT %[6]s FROM s WHERE (SELECT count(*) FROM del) >= 0`,
		from, t.Ident(), t.keyList("d"), strings.Join(keyOfSrc, ", "), columnList(t.Columns, "", ""), strings.Join(casts, ", "))
}

// clearSQL sets cols to NULL in the rows given as one text array per column
// ($1..$n) (their keys are what matters).
func (t *Table) clearSQL(cols []string) string {
	from, casts := t.sourceRows()
	var keyOfSrc, sets []string
	for _, k := range t.Key {
		for i, c := range t.Columns {
			if c.Name == k.Name {
				keyOfSrc = append(keyOfSrc, casts[i])
			}
		}
	}
	for _, c := range cols {
		sets = append(sets, pgx.Identifier{c}.Sanitize()+" = NULL")
	}
	return fmt.Sprintf(`WITH s AS (SELECT * FROM %[1]s)
UPDATE %[2]s AS d SET %[5]s FROM s WHERE (%[3]s) OPERATOR(pg_catalog.=) (%[4]s)`,
		from, t.Ident(), t.keyList("d"), strings.Join(keyOfSrc, ", "), strings.Join(sets, ", "))
}

// keyIndexIdent is the quoted qualified name of KeyIndex, nil for a table
// keyed by its primary key.
func (t *Table) keyIndexIdent() *string {
	if t.KeyIndex == "" {
		return nil
	}
	s := pgx.Identifier{t.Schema, t.KeyIndex}.Sanitize()
	return &s
}

func (t *Table) isKey(name string) bool {
	for _, k := range t.Key {
		if k.Name == name {
			return true
		}
	}
	return false
}
