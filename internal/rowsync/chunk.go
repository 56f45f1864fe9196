package rowsync

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
)

// Range is a range of primary keys, After < key <= Last in the key's order,
// keys in text form. A nil After starts at the table's first row; a nil Last
// runs to its end.
type Range struct {
	After, Last []string
}

func (r Range) String() string {
	after, last := "start", "end"
	if r.After != nil {
		after = fmt.Sprint(r.After)
	}
	if r.Last != nil {
		last = fmt.Sprint(r.Last)
	}
	return fmt.Sprintf("(%s, %s]", after, last)
}

// Summary is what the server says about the rows of a range: how many and
// their chunk hash ("" for no rows), the sum of a 64-bit hash of each row's
// text form (see ChunkHash).
type Summary struct {
	Rows int64
	Hash string
}

// where is the condition that alias's key is in r, with r's keys as
// parameters from $first on, and those parameters.
func (t *Table) where(alias string, r Range, first int) (string, []any) {
	return t.RangeCond(alias, r, func(i int) string { return fmt.Sprintf("$%d", first+i) })
}

// RangeCond is the SQL condition that alias's key is in r, and the key
// values it refers to: the i-th value (from 0) is written as placeholder(i)
// cast to its column's type. Placeholders are $n parameters, or where SQL
// takes no parameters (COPY), current_setting of a variable the caller set.
func (t *Table) RangeCond(alias string, r Range, placeholder func(i int) string) (string, []any) {
	var conds []string
	var args []any
	bound := func(op string, key []string) {
		cond, a := t.KeyCond(alias, op, key, func(i int) string { return placeholder(len(args) + i) })
		conds, args = append(conds, cond), append(args, a...)
	}
	if r.After != nil {
		bound(">", r.After)
	}
	if r.Last != nil {
		bound("<=", r.Last)
	}
	if len(conds) == 0 {
		return "true", nil
	}
	return strings.Join(conds, " AND "), args
}

// KeyCond is the SQL condition that alias's key compares to key with op
// (<, <=, >, >=) in the key's order, and the key values it refers to,
// written as in RangeCond.
func (t *Table) KeyCond(alias, op string, key []string, placeholder func(i int) string) (string, []any) {
	params := make([]string, len(t.Key))
	args := make([]any, len(t.Key))
	for i, c := range t.Key {
		params[i] = fmt.Sprintf("(%s)::%s", placeholder(i), c.Type)
		args[i] = key[i]
	}
	return fmt.Sprintf("(%s) OPERATOR(pg_catalog.%s) (%s)", t.orderList(alias), op, strings.Join(params, ", ")), args
}

// FirstKeyIn is the first key of t in r in key order, nil when there is
// none: one step down the primary key index.
func FirstKeyIn(ctx context.Context, q pgshift.Querier, t *Table, r Range) ([]string, error) {
	q = InSession(q)
	if err := t.checkKey(r); err != nil {
		return nil, err
	}
	cond, args := t.where("t", r, 1)
	var key []string
	err := q.QueryRow(ctx, fmt.Sprintf("SELECT %s FROM %s AS t WHERE %s ORDER BY %s LIMIT 1",
		t.keyArray("t"), t.Ident(), cond, t.orderList("t")), args...).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: first key in %v: %w", t, r, err)
	}
	return key, nil
}

// rowText is the text form of alias's row (its stored columns in table
// order), what row hashes (md5) are computed from, and chunk hashes unless
// t.TypedHash.
func (t *Table) rowText(alias string) string {
	return "ROW(" + columnList(t.Columns, alias, "") + ")::text"
}

// rowHash is the 64-bit hash of alias's row that chunk hashes add up:
// of its text form, or with t.TypedHash of its values by their types' hash
// functions (the columns that are not Hashable as text).
func (t *Table) rowHash(alias string) string {
	if !t.TypedHash {
		return "pg_catalog.hashtextextended(" + t.rowText(alias) + ", 0)"
	}
	return "pg_catalog.hash_record_extended(" + typedRow(t.Columns, alias) + ", 0)"
}

// typedRow is ROW(...) of alias's cols, those that are not Hashable cast to
// text under the "C" collation (a cast keeps the column's collation, and a
// nondeterministic one would hash 'a' and 'A' alike), each Hashable array
// followed by its array_dims (the array hash ignores the shape).
func typedRow(cols []Column, alias string) string {
	var b strings.Builder
	b.WriteString("ROW(")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(alias + "." + c.ident())
		if !c.Hashable {
			b.WriteString(`::text COLLATE "C"`)
		} else if c.Array {
			b.WriteString(", array_dims(" + alias + "." + c.ident() + `) COLLATE "C"`)
		}
	}
	b.WriteString(")")
	return b.String()
}

// keyArray is ARRAY[k1::text, ...] of alias's key.
func (t *Table) keyArray(alias string) string {
	return "ARRAY[" + columnList(t.Key, alias, "::text") + "]"
}

func (t *Table) checkKey(r Range) error {
	for _, k := range [][]string{r.After, r.Last} {
		if k != nil && len(k) != len(t.Key) {
			return fmt.Errorf("%s: key %v has %d values, the primary key has %d columns", t, k, len(k), len(t.Key))
		}
	}
	return nil
}

// NextChunk reads the up to size rows after key after (nil: from the start)
// in key order and returns their range and, when hash is set, their
// Summary (else only Rows is filled in). The range's Last is the last of
// those rows' keys, or nil when fewer than size rows were left: the chunk
// then runs to the table's end, so that rows another side holds beyond this
// side's last key fall into it. It is keyset pagination: the server walks
// the primary key index from after, never skipping rows with OFFSET.
func NextChunk(ctx context.Context, q pgshift.Querier, t *Table, after []string, size int, hash bool) (Range, Summary, error) {
	q = InSession(q)
	r := Range{After: after}
	if err := t.checkKey(r); err != nil {
		return r, Summary{}, err
	}
	cond, args := t.where("t", r, 2)
	hashExpr, rowExpr := "''", ""
	if hash {
		hashExpr, rowExpr = chunkHash("c.h"), ", "+t.rowHash("t")+" AS h"
	}
	var keyCols, keyText, desc []string
	for i, c := range t.Key {
		keyCols = append(keyCols, fmt.Sprintf("t.%s AS k%d", c.ident(), i+1))
		keyText = append(keyText, fmt.Sprintf("c.k%d::text", i+1))
		desc = append(desc, fmt.Sprintf("c.k%d%s DESC", i+1, t.collate(c)))
	}
	// only the last row's key is turned into text
	sql := fmt.Sprintf(`WITH c AS MATERIALIZED (SELECT %[1]s%[2]s FROM %[3]s AS t WHERE %[4]s ORDER BY %[5]s LIMIT $1)
SELECT count(*), %[6]s, (SELECT ARRAY[%[7]s] FROM c ORDER BY %[8]s LIMIT 1) FROM c`,
		strings.Join(keyCols, ", "), rowExpr, t.Ident(), cond, t.orderList("t"), hashExpr, strings.Join(keyText, ", "), strings.Join(desc, ", "))
	var s Summary
	var last []string
	if err := q.QueryRow(ctx, sql, append([]any{size}, args...)...).Scan(&s.Rows, &s.Hash, &last); err != nil {
		return r, s, fmt.Errorf("%s: chunk after %v: %w", t, after, err)
	}
	if s.Rows == int64(size) {
		r.Last = last
	}
	return r, s, nil
}

// chunkHash is the SQL aggregate of the chunk hash over the row hashes
// rowHash: their sum, "" for no rows. sum(bigint) adds in 128 bits and
// returns numeric, so it is exact and never overflows. A sum does not
// depend on the order rows are read in, so the server neither sorts nor
// concatenates a chunk's rows.
func chunkHash(rowHash string) string {
	return fmt.Sprintf("coalesce(sum(%s)::text, '')", rowHash)
}

// HashRange returns the Summary of the rows of t in r, read in whatever
// order the server likes (the chunk hash does not depend on it).
func HashRange(ctx context.Context, q pgshift.Querier, t *Table, r Range) (Summary, error) {
	q = InSession(q)
	if err := t.checkKey(r); err != nil {
		return Summary{}, err
	}
	cond, args := t.where("t", r, 1)
	sql := fmt.Sprintf(`SELECT count(*), %s FROM %s AS t WHERE %s`, chunkHash(t.rowHash("t")), t.Ident(), cond)
	var s Summary
	if err := q.QueryRow(ctx, sql, args...).Scan(&s.Rows, &s.Hash); err != nil {
		return s, fmt.Errorf("%s: hash chunk %v: %w", t, r, err)
	}
	return s, nil
}

// RowHash is one row's key and the md5 of its text form.
type RowHash struct {
	Key  []string
	Hash string
}

// RowHashes returns the key and hash of every row of t in r, in key order:
// the drill-down into a chunk whose hashes differ.
func RowHashes(ctx context.Context, q pgshift.Querier, t *Table, r Range) ([]RowHash, error) {
	q = InSession(q)
	if err := t.checkKey(r); err != nil {
		return nil, err
	}
	cond, args := t.where("t", r, 1)
	sql := fmt.Sprintf(`SELECT %s, md5(%s) FROM %s AS t WHERE %s ORDER BY %s`,
		t.keyArray("t"), t.rowText("t"), t.Ident(), cond, t.orderList("t"))
	out, err := collectRowHashes(ctx, q, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: rows of chunk %v: %w", t, r, err)
	}
	return out, nil
}

// RowHashesOf returns the key and hash of the rows of t with the given keys
// that exist, in key order.
func RowHashesOf(ctx context.Context, q pgshift.Querier, t *Table, keys [][]string) ([]RowHash, error) {
	q = InSession(q)
	if len(keys) == 0 {
		return nil, nil
	}
	keyArgs, err := t.keyColumnsOf(keys)
	if err != nil {
		return nil, err
	}
	sql := fmt.Sprintf(`SELECT %s, md5(%s) FROM %s AS t JOIN %s ON %s ORDER BY %s`,
		t.keyArray("t"), t.rowText("t"), t.Ident(), t.keySet(1, "k"), t.keyMatch("t", "k"), t.orderList("t"))
	out, err := collectRowHashes(ctx, q, sql, keyArgs...)
	if err != nil {
		return nil, fmt.Errorf("%s: rows of %d keys: %w", t, len(keys), err)
	}
	return out, nil
}

func collectRowHashes(ctx context.Context, q pgshift.Querier, sql string, args ...any) ([]RowHash, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (RowHash, error) {
		var h RowHash
		err := row.Scan(&h.Key, &h.Hash)
		return h, err
	})
}

// Diff is how the rows of a destination differ from those of a source.
type Diff struct {
	// Missing are keys the source has and the destination lacks.
	Missing [][]string
	// Extra are keys the destination has and the source lacks.
	Extra [][]string
	// Different are keys both have with different values.
	Different [][]string
}

// Len is the number of differing keys.
func (d Diff) Len() int { return len(d.Missing) + len(d.Extra) + len(d.Different) }

// Keys are all differing keys: what CopyKeys needs to make the destination
// equal to the source.
func (d Diff) Keys() [][]string {
	out := make([][]string, 0, d.Len())
	out = append(out, d.Missing...)
	out = append(out, d.Extra...)
	return append(out, d.Different...)
}

// DiffRows compares the rows of a source and a destination by key.
func DiffRows(src, dst []RowHash) Diff {
	var d Diff
	dstByKey := make(map[string]string, len(dst))
	for _, r := range dst {
		dstByKey[keyString(r.Key)] = r.Hash
	}
	for _, r := range src {
		k := keyString(r.Key)
		h, ok := dstByKey[k]
		switch {
		case !ok:
			d.Missing = append(d.Missing, r.Key)
		case h != r.Hash:
			d.Different = append(d.Different, r.Key)
		}
		delete(dstByKey, k)
	}
	for _, r := range dst {
		if _, ok := dstByKey[keyString(r.Key)]; ok {
			d.Extra = append(d.Extra, r.Key)
		}
	}
	return d
}

// keyString is a map key for a key: its values joined by a byte that text
// values cannot hold.
func keyString(k []string) string { return strings.Join(k, "\x00") }

// UniqueKeys is the keys of all the lists, each once, in the order first
// seen.
func UniqueKeys(lists ...[][]string) [][]string {
	seen := make(map[string]bool)
	var out [][]string
	for _, keys := range lists {
		for _, k := range keys {
			if s := keyString(k); !seen[s] {
				seen[s] = true
				out = append(out, k)
			}
		}
	}
	return out
}
