package rowsync_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// shapesDDL is a table with every shape rowsync must handle: a non-public
// schema and a table name with mixed case and spaces, a composite key, enum
// and domain columns, arrays, and a generated and an identity column.
const shapesDDL = `
CREATE SCHEMA "App Schema";
CREATE TYPE "App Schema"."Mood" AS ENUM ('sad', 'ok', 'happy ''quoted''');
CREATE DOMAIN "App Schema".positive AS integer CHECK (VALUE > 0);
CREATE TABLE "App Schema"."Order Items" (
	"Tenant" text NOT NULL,
	"line No" bigint NOT NULL,
	amount numeric(20,5),
	note text,
	data bytea,
	doc jsonb,
	plain json,
	at timestamptz,
	tags text[],
	nums integer[],
	u uuid,
	mood "App Schema"."Mood",
	moods "App Schema"."Mood"[],
	qty "App Schema".positive,
	f float8,
	span interval,
	seq bigint GENERATED ALWAYS AS IDENTITY,
	doubled numeric GENERATED ALWAYS AS (amount * 2) STORED,
	PRIMARY KEY ("Tenant", "line No")
);`

const shapesRows = `
INSERT INTO "App Schema"."Order Items" ("Tenant", "line No", amount, note, data, doc, plain, at, tags, nums, u, mood, moods, qty, f, span) VALUES
 ('acme', 1, 12345678901234.12345, 'plain', '\x00ff10', '{"a": [1, 2.50, null], "b": "é"}', '{ "keep":  "spacing" }', '2024-02-29 23:59:59.123456+05:30',
  '{"a b", "c,d", NULL, "\"q\""}', '{1,2,3}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy ''quoted''', '{sad,ok}', 7, 0.1, '1 year 2 mons 3 days 04:05:06.789'),
 ('acme', 2, 'NaN', E'line\nbreak\ttab \\ backslash', '\x', '[]', 'null', '-infinity', '{}', '{}', NULL, 'sad', '{}', 1, 1e-300, '-1 day'),
 ('Beta Co', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-Infinity', NULL),
 ('Beta Co', 2, -0.00001, '', '\xdeadbeef', '{"nested": {"x": 1e100}}', '1', '1999-01-08 04:05:06 PST', '{NULL}', '{NULL,-1}', '00000000-0000-0000-0000-000000000000', 'ok', '{"happy ''quoted''"}', 2147483647, 'NaN', '00:00:00.000001');`

// setup returns a pair of fresh databases that both have the shapes table,
// and the table as loaded from old.
func setup(t *testing.T) (*pgtest.Pair, *rowsync.Table) {
	t.Helper()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, shapesDDL)
	}
	pgtest.Exec(t, p.Old.Pool, shapesRows)
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "App Schema", "Order Items")
	if err != nil {
		t.Fatal(err)
	}
	return p, tbl
}

func allKeys(t *testing.T, q pgshift.Querier, tbl *rowsync.Table) [][]string {
	t.Helper()
	return allKeysBy(t, q, `SELECT ARRAY["Tenant", "line No"::text] FROM `+tbl.Ident())
}

// allKeysBy returns the keys query selects, one text array per row.
func allKeysBy(t *testing.T, q pgshift.Querier, query string) [][]string {
	t.Helper()
	rows, err := q.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestLoadTableReadsColumnsTypesAndKeyOrder(t *testing.T) {
	t.Parallel()
	_, tbl := setup(t)
	if got, want := tbl.Ident(), `"App Schema"."Order Items"`; got != want {
		t.Errorf("Ident = %s, want %s", got, want)
	}
	var keys []string
	for _, k := range tbl.Key {
		keys = append(keys, k.Name+" "+k.Type)
	}
	if want := []string{"Tenant text", "line No bigint"}; !slices.Equal(keys, want) {
		t.Errorf("key = %q, want %q", keys, want)
	}
	types := map[string]string{}
	for _, c := range tbl.Columns {
		types[c.Name] = c.Type
	}
	for name, want := range map[string]string{
		"amount": "numeric(20,5)", "tags": "text[]", "mood": `"App Schema"."Mood"`,
		"moods": `"App Schema"."Mood"[]`, "qty": `"App Schema".positive`, "seq": "bigint",
	} {
		if types[name] != want {
			t.Errorf("column %s type = %q, want %q", name, types[name], want)
		}
	}
	if _, ok := types["doubled"]; ok {
		t.Errorf("generated column doubled listed among the copied columns")
	}
}

func TestLoadTableWithoutPrimaryKeyNamesTableAndFix(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	// Unique indexes that cannot key rows: on a nullable column, partial,
	// on an expression.
	pgtest.Exec(t, p.Old.Pool, `CREATE TABLE "Log Lines" (msg text, at timestamptz NOT NULL, n int NOT NULL);
		CREATE UNIQUE INDEX ON "Log Lines" (msg); CREATE UNIQUE INDEX ON "Log Lines" (at) WHERE n > 0;
		CREATE UNIQUE INDEX ON "Log Lines" ((n + 1))`)
	_, err := rowsync.LoadTable(context.Background(), p.Old.Pool, "public", "Log Lines")
	var npk *rowsync.NoPrimaryKeyError
	if !errors.As(err, &npk) || !errors.Is(err, rowsync.ErrNoPrimaryKey) {
		t.Fatalf("err = %v, want a *NoPrimaryKeyError", err)
	}
	for _, want := range []string{`"public"."Log Lines"`, "add one", "--exclude-table Log Lines", "--copy-whole Log Lines"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := rowsync.LoadTable(context.Background(), p.Old.Pool, "public", "missing"); !errors.Is(err, rowsync.ErrNoTable) {
		t.Errorf("missing table: err = %v, want ErrNoTable", err)
	}
}

// A table without a primary key is keyed by its unique index on NOT NULL
// columns with the fewest columns (INCLUDE columns are not part of it), and
// the row engine copies and compares it like any other.
func TestLoadTableWithoutPrimaryKeyUsesUniqueIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE accounts (region text NOT NULL, no int NOT NULL, email text, note text);
			CREATE UNIQUE INDEX accounts_email ON accounts (email);
			CREATE UNIQUE INDEX accounts_wide ON accounts (region, no, note);
			CREATE UNIQUE INDEX accounts_key ON accounts (region, no) INCLUDE (note)`)
	}
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO accounts SELECT 'r' || i % 3, i, 'e' || i, 'n' FROM generate_series(1, 50) AS i`)
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "accounts")
	if err != nil {
		t.Fatal(err)
	}
	var key []string
	for _, c := range tbl.Key {
		key = append(key, c.Name)
	}
	if tbl.KeyIndex != "accounts_key" || !slices.Equal(key, []string{"region", "no"}) {
		t.Fatalf("keyed by %s %v, want accounts_key (region, no)", tbl.KeyIndex, key)
	}
	keys := allKeysBy(t, p.Old.Pool, `SELECT ARRAY[region, no::text] FROM accounts`)
	if up, _, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, keys); err != nil || up != 50 {
		t.Fatalf("CopyKeys: %d upserted, %v; want 50", up, err)
	}
	_, o, err := rowsync.NextChunk(ctx, p.Old.Pool, tbl, nil, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := rowsync.NextChunk(ctx, p.New.Pool, tbl, nil, 100, true)
	if err != nil || o != n || o.Rows != 50 {
		t.Fatalf("old %v, new %v (err %v); want the same 50 rows", o, n, err)
	}
}

func TestListTablesLeavesOutPgshiftAndOtherSchemas(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain) // users, posts, events + schema pgshift
	pgtest.Exec(t, p.Old.Pool, `CREATE SCHEMA other; CREATE TABLE other.x (id int PRIMARY KEY);
		CREATE TABLE "Mixed Case" (id int PRIMARY KEY);
		CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10)`)
	ctx := context.Background()
	got, err := rowsync.ListTables(ctx, p.Old.Pool, "public")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Mixed Case", "events", "parted", "posts", "users"}; !slices.Equal(got, want) {
		t.Errorf("public tables = %q, want %q", got, want)
	}
	if own, err := rowsync.ListTables(ctx, p.Old.Pool, pgshiftdb.Schema); err != nil || len(own) != 0 {
		t.Errorf("pgshift schema listed %q (err %v), want nothing", own, err)
	}
}

func TestCopyKeysRoundTripsEveryShapeExactly(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	ctx := context.Background()
	// new holds a stale version of one row, a row old no longer has, and an
	// unrelated row that must survive.
	pgtest.Exec(t, p.New.Pool, `INSERT INTO `+tbl.Ident()+` ("Tenant", "line No", seq, note) OVERRIDING SYSTEM VALUE VALUES
		('acme', 1, 1, 'stale'), ('gone', 5, 98, 'deleted on old'), ('keep', 1, 97, 'not asked for')`)
	keys := append(allKeys(t, p.Old.Pool, tbl), []string{"gone", "5"}, []string{"nowhere", "1"})
	up, del, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, keys)
	if err != nil {
		t.Fatal(err)
	}
	if up != 4 || del != 1 {
		t.Errorf("upserted, deleted = %d, %d; want 4, 1", up, del)
	}
	pgtest.Exec(t, p.New.Pool, `DELETE FROM `+tbl.Ident()+` WHERE "Tenant" = 'keep'`)
	if o, n := pgtest.Dump(t, p.Old.Pool, tbl.Ident()), pgtest.Dump(t, p.New.Pool, tbl.Ident()); !slices.Equal(o, n) {
		t.Fatalf("sides differ after copy:\nold %q\nnew %q", o, n)
	}
	up, del, err = rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, keys)
	if err != nil || up != 0 || del != 0 {
		t.Errorf("second copy: upserted %d deleted %d err %v; want nothing written", up, del, err)
	}
}

func TestCopyKeysInsideTransactions(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	ctx := context.Background()
	src, err := p.Old.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Rollback(ctx) }()
	pgtest.Exec(t, src, `UPDATE `+tbl.Ident()+` SET note = 'uncommitted' WHERE "Tenant" = 'acme' AND "line No" = 1`)
	conn, err := p.New.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, _, err := rowsync.CopyKeys(ctx, src, conn.Conn(), tbl, [][]string{{"acme", "1"}}); err != nil {
		t.Fatal(err)
	}
	var note string
	if err := p.New.Pool.QueryRow(ctx, `SELECT note FROM `+tbl.Ident()).Scan(&note); err != nil || note != "uncommitted" {
		t.Errorf("note on new = %q (err %v), want the source transaction's value", note, err)
	}
}

func TestCopyKeysWithKeyTextOfScannedValues(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	ctx := context.Background()
	ddl := `CREATE TABLE events (at timestamptz, id uuid, raw bytea, n numeric, ok boolean, v text, PRIMARY KEY (at, id, raw, n, ok))`
	pgtest.Exec(t, p.Old.Pool, ddl)
	pgtest.Exec(t, p.New.Pool, ddl)
	id := uuid.New()
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO events VALUES ('2024-05-01 12:00:00.654321+02', $1, '\x00ff', 1.50, true, 'x')`, id)
	var at, gotID, raw, n, ok any
	if err := p.Old.Pool.QueryRow(ctx, `SELECT at, id, raw, n::text, ok FROM events`).Scan(&at, &gotID, &raw, &n, &ok); err != nil {
		t.Fatal(err)
	}
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "events")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range [][]string{rowsync.KeyText(at, gotID, raw, n, ok), rowsync.KeyText(at, id, raw, n, ok)} {
		pgtest.Exec(t, p.New.Pool, `DELETE FROM events`)
		if up, _, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, [][]string{key}); err != nil || up != 1 {
			t.Errorf("key %q: upserted %d, err %v; want 1 row", key, up, err)
		}
	}
}

func TestCopyKeysRejectsKeyOfWrongLength(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t)
	_, _, err := rowsync.CopyKeys(context.Background(), p.Old.Pool, p.New.Pool, tbl, [][]string{{"acme"}})
	if err == nil || !strings.Contains(err.Error(), "2 columns") {
		t.Fatalf("err = %v, want a key length error", err)
	}
}

var _ pgshift.Querier = (*pgxpool.Pool)(nil)
var _ pgshift.Querier = (*pgx.Conn)(nil)
var _ pgshift.Querier = pgx.Tx(nil)

// KeyText of a Go value is the text the server prints for that value (sent
// as a parameter of the column's type), with SessionParams in force:
// the repair log, the row engine and the server name a row alike.
func TestKeyTextIsTheServersText(t *testing.T) {
	t.Parallel()
	oldServer, _ := pgtest.Servers(t)
	db := pgtest.NewDB(t, oldServer, pgtest.Empty)
	ctx := context.Background()
	conn, err := rowsync.Connect(ctx, db.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var num pgtype.Numeric
	if err := num.Scan("12345.50"); err != nil {
		t.Fatal(err)
	}
	id := uuid.MustParse("0190f3a4-1b2c-7d3e-8f40-112233445566")
	for _, tc := range []struct {
		typ string
		v   any
	}{
		{"text", "tenant a"},
		{"bytea", []byte{0xde, 0xad, 0x00, 0xbe, 0xef}},
		{"timestamptz", time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("IST", 5*3600+1800))},
		{"timestamptz", time.Date(2024, 2, 29, 23, 59, 58, 100000000, time.UTC)},
		{"timestamptz", time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC)},
		{"numeric", num},
		{"numeric", "0.000100"},
		{"bool", true},
		{"bool", false},
		{"float8", 1234567.125},
		{"float8", 0.1},
		{"float8", 1e20},
		{"float8", 1.5e-7},
		{"float8", 123456789012345.0},
		{"float8", 1234567890123456.0},
		{"float4", float32(0.1)},
		{"float4", float32(1234567)},
		{"uuid", id},
		{"uuid", [16]byte(id)},
		{"int8", int64(-42)},
		{"int4", int32(7)},
		{"int2", int16(-3)},
	} {
		want := rowsync.KeyText(tc.v)[0]
		var got string
		if err := rowsync.InSession(conn).QueryRow(ctx, "SELECT ($1::"+tc.typ+")::text", tc.v).Scan(&got); err != nil {
			t.Errorf("%s %#v: %v", tc.typ, tc.v, err)
			continue
		}
		if got != want {
			t.Errorf("%s %#v: server prints %q, KeyText gives %q", tc.typ, tc.v, got, want)
		}
	}
}
