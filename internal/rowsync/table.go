package rowsync

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// SessionParams are the run-time parameters in force on both sides of a
// copy or a comparison, so that the text form of every value is the same on
// both sides and parses back exactly. The row engine sets them per
// transaction (InSession, SetSession), which works behind a pooler in
// transaction mode; capture triggers set them on their functions.
var SessionParams = map[string]string{
	"timezone":           "UTC",
	"datestyle":          "ISO, YMD",
	"intervalstyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
}

// ErrNoPrimaryKey is matched (errors.Is) by a *NoPrimaryKeyError.
var ErrNoPrimaryKey = errors.New("table has no primary key")

// ErrNoTable is returned (wrapped) when the table does not exist.
var ErrNoTable = errors.New("table does not exist")

// NoPrimaryKeyError says that a table cannot be copied or compared row by
// row because nothing identifies its rows.
type NoPrimaryKeyError struct {
	Schema, Name string
}

func (e *NoPrimaryKeyError) Error() string {
	q := pgx.Identifier{e.Schema, e.Name}.Sanitize()
	return fmt.Sprintf("table %s has no primary key and no unique index on NOT NULL columns, and pgshift identifies rows by key: "+
		"add one on old and new (ALTER TABLE %s ADD PRIMARY KEY (...)), leave the table out (--exclude-table %s), "+
		"or, if the application does not write it during the migration, copy it whole (--copy-whole %s: backfill copies it in one snapshot, verify compares it as a multiset of rows)",
		q, q, e.Name, e.Name)
}

// Is makes errors.Is(err, ErrNoPrimaryKey) true.
func (e *NoPrimaryKeyError) Is(target error) bool { return target == ErrNoPrimaryKey }

// Column is one column of a table.
type Column struct {
	Name string
	// Type is the column's type as format_type names it: qualified and
	// quoted as needed, with its modifier ("numeric(10,2)", "app.mood[]").
	Type string
	// AlwaysIdentity is set for GENERATED ALWAYS AS IDENTITY columns: they
	// are copied when a row is inserted but PostgreSQL refuses to update them,
	// so an update leaves them as they are.
	AlwaysIdentity bool
	// Hashable is set for columns whose type's own hash function tells
	// values apart exactly as their text forms do, and hashes alike on
	// every server (see TypedHash): built-in types in hashableTypes, or
	// arrays of them, numeric and character only with a modifier (which
	// fixes the scale or the padding), text types only under a
	// deterministic collation.
	Hashable bool
	// Array is set for array types. PostgreSQL's array hash ignores an
	// array's dimensions and lower bounds ('{1,2}' and '{{1,2}}', '{3}'
	// and '[5:5]={3}' hash alike), so a typed hash adds array_dims.
	Array bool
	// Collation describes how the column's values sort on its server: ""
	// for a type without collation, "C" for byte order, else provider,
	// locale, determinism and version (collationOf). Two servers whose key
	// columns have the same Collation order keys alike.
	Collation string
}

// hashableTypes are the built-in types whose hash functions are exact (equal
// hashes where the text forms are equal, under the caller's modifier and
// collation rules) and stable across servers and major versions (hash
// partitioning depends on them). Enums are not among them: their hash is of
// the label's OID, which differs between databases; nor are floats (0 and
// -0 hash alike, print apart), intervals ('1 day' and '24 hours') and jsonb
// (its hash skips the structure: '{}', '[]' and NULL all hash to 0).
var hashableTypes = []string{"bool", "int2", "int4", "int8", "text", "varchar", "bpchar", "bytea", "uuid",
	"date", "time", "timestamp", "timestamptz", "numeric"}

// ident is the column's quoted name.
func (c Column) ident() string { return pgx.Identifier{c.Name}.Sanitize() }

// Table is a table as the catalog describes it.
type Table struct {
	Schema, Name string
	// Columns are the stored (non-generated) columns in table order.
	Columns []Column
	// Key are the columns that identify a row, in key order: the primary
	// key's, or, for a table without one, those of KeyIndex.
	Key []Column
	// KeyIndex names the unique index on NOT NULL columns that keys a
	// table without a primary key; "" when the primary key does.
	KeyIndex string
	// TypedHash makes chunk, table and bucket hashes hash each row with
	// the column types' own hash functions (hash_record_extended, with
	// the columns that are not Hashable as text) instead of rendering the
	// whole row as text first, which is most of a hash's cost. Set it only
	// when both servers have hash_record_extended (PostgreSQL 14 and
	// later; SupportsTypedHash), and on the Table both sides hash with.
	TypedHash bool
	// KeyOrderC compares and sorts the key's text columns in byte order
	// (COLLATE "C") instead of by their collations. AlignKeyOrder sets it
	// when the two servers' key collations cannot be shown to sort alike,
	// because ranges planned on one side must hold the same keys on the
	// other. It costs the primary key index: each range is found by a scan.
	KeyOrderC bool
}

// Keyless reports that nothing identifies t's rows (LoadTableOrKeyless):
// it is copied whole and compared as a multiset of rows.
func (t *Table) Keyless() bool { return len(t.Key) == 0 }

// Ident is the table's quoted, schema-qualified name for SQL.
func (t *Table) Ident() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Qualified is the table's schema-qualified name unquoted, schema.name: the
// form machine-readable output (pgshift --json, the demo's API) uses.
func (t *Table) Qualified() string { return t.Schema + "." + t.Name }

// String is the table's name for messages (quoted like in SQL).
func (t *Table) String() string { return t.Ident() }

// LoadTable reads table schema.name's columns and key from the catalog of
// the database q is connected to: its primary key, or else its unique index
// on NOT NULL columns with the fewest columns (not partial, no
// expressions). A table with neither is a *NoPrimaryKeyError.
func LoadTable(ctx context.Context, q pgshift.Querier, schema, name string) (*Table, error) {
	t, err := LoadTableOrKeyless(ctx, q, schema, name)
	if err == nil && t.Keyless() {
		return nil, &NoPrimaryKeyError{Schema: schema, Name: name}
	}
	return t, err
}

// LoadTableOrKeyless is LoadTable for a table that may have no key: such a
// table comes back with no Key (Keyless) instead of a *NoPrimaryKeyError.
// Only whole-table work takes a keyless table (a backfill's whole copy,
// verify's comparison of multisets); every function that reads or writes
// rows by key needs a Key.
func LoadTableOrKeyless(ctx context.Context, q pgshift.Querier, schema, name string) (*Table, error) {
	t := &Table{Schema: schema, Name: name}
	var oid uint32
	err := q.QueryRow(ctx, `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, name).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("table %s: %w (check --schema and --table)", t, ErrNoTable)
	}
	if err != nil {
		return nil, fmt.Errorf("load table %s: %w", t, err)
	}
	rows, err := q.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity = 'a', `+collationOf+`,
		  ty.typcategory = 'A' AND ty.typelem <> 0,
		  coalesce(e.typnamespace = 'pg_catalog'::regnamespace::oid AND e.typname = ANY($2::text[])
		    AND (e.typname NOT IN ('numeric', 'bpchar') OR a.atttypmod >= 0)
		    AND (a.attcollation = 0::oid OR (SELECT co.collisdeterministic FROM pg_collation co WHERE co.oid = a.attcollation)), false)
		FROM pg_attribute a
		JOIN pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_type e ON e.oid = CASE WHEN ty.typcategory = 'A' AND ty.typelem <> 0::oid THEN ty.typelem ELSE ty.oid END
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, oid, hashableTypes)
	if err != nil {
		return nil, fmt.Errorf("load table %s: columns: %w", t, err)
	}
	byName := map[string]Column{}
	for rows.Next() {
		var c Column
		if err := rows.Scan(&c.Name, &c.Type, &c.AlwaysIdentity, &c.Collation, &c.Array, &c.Hashable); err != nil {
			rows.Close()
			return nil, fmt.Errorf("load table %s: columns: %w", t, err)
		}
		t.Columns = append(t.Columns, c)
		byName[c.Name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load table %s: columns: %w", t, err)
	}
	keys, err := collectStrings(ctx, q, `SELECT a.attname
		FROM pg_index i CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord`, oid)
	if err != nil {
		return nil, fmt.Errorf("load table %s: primary key: %w", t, err)
	}
	if len(keys) == 0 {
		// Without a primary key, a unique index on NOT NULL columns
		// identifies rows as well: the one with fewest columns, then by
		// name. Partial and expression indexes do not (they leave rows out
		// or key them by computed values).
		if err := q.QueryRow(ctx, `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
			  AND NOT EXISTS (SELECT FROM pg_catalog.unnest(i.indkey[0:i.indnkeyatts - 1]) AS k(attnum)
			    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE NOT a.attnotnull)
			ORDER BY i.indnkeyatts, c.relname LIMIT 1`, oid).Scan(&t.KeyIndex); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("load table %s: unique indexes: %w", t, err)
		}
		if t.KeyIndex != "" {
			keys, err = collectStrings(ctx, q, `SELECT a.attname
				FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
				CROSS JOIN LATERAL pg_catalog.unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
				JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
				WHERE i.indrelid = $1 AND c.relname = $2 ORDER BY k.ord`, oid, t.KeyIndex)
			if err != nil {
				return nil, fmt.Errorf("load table %s: key of index %s: %w", t, t.KeyIndex, err)
			}
		}
	}
	for _, k := range keys {
		t.Key = append(t.Key, byName[k])
	}
	return t, nil
}

// Keyed reports, for each table of schema named in names (every table of
// schema when names is nil) that exists on q's database, whether it has a
// key LoadTable would find: a primary key, or a unique index on NOT NULL
// columns that is neither partial nor on expressions. One catalog query;
// tables that do not exist are not in the map. It runs in sessions pgshift
// does not own (the facade's pools), so it names pg_catalog's operators.
func Keyed(ctx context.Context, q pgshift.Querier, schema string, names []string) (map[string]bool, error) {
	rows, err := q.Query(ctx, `SELECT c.relname::text, EXISTS (SELECT FROM pg_catalog.pg_index i
		  WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND (i.indisprimary OR (i.indisunique AND i.indisvalid
		    AND i.indpred IS NULL AND i.indexprs IS NULL
		    AND NOT EXISTS (SELECT FROM pg_catalog.unnest(i.indkey[0:i.indnkeyatts OPERATOR(pg_catalog.-) 1]) AS k(attnum)
		      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid AND a.attnum OPERATOR(pg_catalog.=) k.attnum
		      WHERE NOT a.attnotnull))))
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
		WHERE n.nspname OPERATOR(pg_catalog.=) $1::text AND c.relkind IN ('r', 'p')
		  AND ($2::text[] IS NULL OR c.relname::text OPERATOR(pg_catalog.=) ANY ($2::text[]))`, schema, names)
	if err != nil {
		return nil, fmt.Errorf("keys of the tables of schema %s: %w", pgx.Identifier{schema}.Sanitize(), err)
	}
	out := map[string]bool{}
	var name string
	var keyed bool
	_, err = pgx.ForEachRow(rows, []any{&name, &keyed}, func() error {
		out[name] = keyed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("keys of the tables of schema %s: %w", pgx.Identifier{schema}.Sanitize(), err)
	}
	return out, nil
}

// MatchTable reports whether table name matches one of patterns (shell
// patterns, path.Match syntax: audit_*): the patterns of pgshift's
// --exclude-table and --copy-whole.
func MatchTable(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { ok, _ := path.Match(p, name); return ok })
}

// ListTables lists the base and partitioned tables of schema (partitions
// left out: they are copied through their parent), by name. pgshift's own
// schema is never listed.
func ListTables(ctx context.Context, q pgshift.Querier, schema string) ([]string, error) {
	names, err := collectStrings(ctx, q, `SELECT c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND n.nspname <> $2 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		ORDER BY c.relname`, schema, pgshiftdb.Schema)
	if err != nil {
		return nil, fmt.Errorf("list tables of schema %s: %w", pgx.Identifier{schema}.Sanitize(), err)
	}
	return names, nil
}

func collectStrings(ctx context.Context, q pgshift.Querier, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// ColumnList is the quoted names of the stored columns, comma-separated.
func (t *Table) ColumnList() string { return columnList(t.Columns, "", "") }

// keyList is "k1", "k2" of the key columns, qualified with alias when given.
func (t *Table) keyList(alias string) string { return columnList(t.Key, alias, "") }

// columnList joins the quoted column names, each prefixed with alias and
// followed by suffix.
func columnList(cols []Column, alias, suffix string) string {
	var b strings.Builder
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		if alias != "" {
			b.WriteString(alias)
			b.WriteByte('.')
		}
		b.WriteString(c.ident())
		b.WriteString(suffix)
	}
	return b.String()
}

// SupportsTypedHash reports whether the server q is connected to can hash
// rows with Table.TypedHash (PostgreSQL 14 and later).
func SupportsTypedHash(ctx context.Context, q pgshift.Querier) (bool, error) {
	var ok bool
	if err := q.QueryRow(ctx, `SELECT current_setting('server_version_num')::int >= 140000`).Scan(&ok); err != nil {
		return false, fmt.Errorf("server version: %w", err)
	}
	return ok, nil
}

// TypedHashOnBoth reports whether both servers hash rows by their types'
// own hash functions (Table.TypedHash): when one is older than PostgreSQL
// 14, both render rows as text instead.
func TypedHashOnBoth(ctx context.Context, oldDB, newDB pgshift.Querier) (bool, error) {
	for i, db := range []pgshift.Querier{oldDB, newDB} {
		ok, err := SupportsTypedHash(ctx, db)
		if err != nil {
			return false, fmt.Errorf("%s: %w", [2]string{"old", "new"}[i], err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// collationOf is the SQL of Column.Collation for pg_attribute a: byte order
// ("C") for libc's C, POSIX and C.UTF-8; else provider, locale,
// determinism and the collation's version (of the library that sorts:
// glibc or ICU), "unversioned" where the server cannot tell it. The
// database's default collation is described by the database's locale.
// Catalog columns that differ between major versions are read through
// to_jsonb, so the same text works on every supported server.
const collationOf = `(SELECT CASE WHEN a.attcollation = 0::oid THEN ''
	WHEN x.prov = 'c' AND x.loc IN ('C', 'POSIX', 'C.UTF-8', 'C.utf8') THEN 'C'
	ELSE x.prov || ':' || coalesce(x.loc, '') || CASE WHEN x.det THEN '' ELSE ':nondeterministic' END || ':' || coalesce(nullif(x.ver, ''), 'unversioned') END
	FROM (SELECT
		CASE WHEN co.oid = 100::oid THEN coalesce(d.j->>'datlocprovider', 'c') ELSE co.collprovider::text END AS prov,
		CASE WHEN co.oid <> 100::oid THEN coalesce(pg_catalog.to_jsonb(co)->>'colliculocale', pg_catalog.to_jsonb(co)->>'colllocale', co.collcollate)
			WHEN coalesce(d.j->>'datlocprovider', 'c') = 'c' THEN d.j->>'datcollate'
			ELSE coalesce(d.j->>'daticulocale', d.j->>'datlocale') END AS loc,
		co.collisdeterministic AS det,
		CASE WHEN co.oid <> 100::oid THEN pg_collation_actual_version(co.oid)
			ELSE coalesce(d.j->>'datcollversion', (SELECT pg_collation_actual_version(l.oid) FROM pg_collation l
				WHERE l.collprovider = 'c' AND l.collcollate = d.j->>'datcollate' LIMIT 1)) END AS ver
		FROM pg_collation co, (SELECT pg_catalog.to_jsonb(db) AS j FROM pg_database db WHERE db.datname = current_database()) AS d
		WHERE co.oid = CASE WHEN a.attcollation = 0::oid THEN 100::oid ELSE a.attcollation END) AS x)`

// AlignKeyOrder makes t's key order one that the database other (the side t
// was not loaded from) shares: t's own when the key columns' collations
// are the same there and versioned, byte order (KeyOrderC) otherwise. It
// returns the key columns whose collations could not be shown to match.
func AlignKeyOrder(ctx context.Context, other pgshift.Querier, t *Table) ([]string, error) {
	theirs, err := LoadTable(ctx, other, t.Schema, t.Name)
	if err != nil {
		return nil, fmt.Errorf("key order of %s on the other side: %w", t, err)
	}
	collations := map[string]string{}
	for _, c := range theirs.Columns {
		collations[c.Name] = c.Collation
	}
	var unmatched []string
	for _, c := range t.Key {
		ours, theirs := c.Collation, collations[c.Name]
		if ours != theirs || strings.HasSuffix(ours, ":unversioned") {
			unmatched = append(unmatched, fmt.Sprintf("%s (%s here, %s there)", c.Name, describeCollation(ours), describeCollation(theirs)))
		}
	}
	t.KeyOrderC = len(unmatched) > 0
	return unmatched, nil
}

func describeCollation(c string) string {
	if c == "" {
		return "no collation"
	}
	return c
}

// orderList is the key columns of alias as ORDER BY and comparisons use
// them: in byte order where t.KeyOrderC and the column has a collation.
// (keyList is the plain list, for conflict targets and equality joins.)
func (t *Table) orderList(alias string) string {
	var b strings.Builder
	for i, c := range t.Key {
		if i > 0 {
			b.WriteString(", ")
		}
		if alias != "" {
			b.WriteString(alias + ".")
		}
		b.WriteString(c.ident() + t.collate(c))
	}
	return b.String()
}

// collate is ` COLLATE "C"` where t compares c in byte order, else "".
func (t *Table) collate(c Column) string {
	if t.KeyOrderC && c.Collation != "" && c.Collation != "C" {
		return ` COLLATE "C"`
	}
	return ""
}

// KeyOrder is the key columns in key order for an ORDER BY clause (see
// KeyOrderC).
func (t *Table) KeyOrder() string { return t.orderList("") }

// EstimateRows is t's row count on q as its statistics estimate it (for
// progress and ETAs), counted when the table was never analyzed.
func EstimateRows(ctx context.Context, q pgshift.Querier, t *Table) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass`, t.Ident()).Scan(&n)
	if err == nil && n == 0 {
		err = q.QueryRow(ctx, `SELECT count(*) FROM `+t.Ident()).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: estimate rows: %w", t, err)
	}
	return n, nil
}
