package rowsync_test

import (
	"context"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// typedDDL has a column of each kind the typed hash treats apart: types it
// hashes by value, and those it must hash as text because their own hash
// is not exact (floats, intervals, unconstrained numeric, case-insensitive
// text, jsonb) or differs between databases (enums hash their labels'
// OIDs).
const typedDDL = `
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE typed (
	id bigint PRIMARY KEY,
	n numeric(10,2), u uuid, ts timestamptz, d date, b bool, j jsonb, arr int[], t text, by bytea,
	mood mood, f float8, iv interval, free numeric, ci text COLLATE ci, js json, dom positive
)`

// moodPair is a fresh pair of databases with the enum mood ('sad', 'ok')
// on both; on new it is made after another type, so its labels' OIDs
// differ from old's.
func moodPair(t *testing.T) *pgtest.Pair {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Empty)
	pgtest.Exec(t, p.New.Pool, `CREATE TYPE spare AS ENUM ('x', 'y', 'z')`)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TYPE mood AS ENUM ('sad', 'ok')`)
	}
	return p
}

// TestTypedHashTellsApartWhatTextDoes hashes identical rows alike on two
// servers whose enum OIDs differ (and whose major versions may differ), and
// tells apart every pair of values whose text forms differ, even where the
// type's own hash would not.
func TestTypedHashTellsApartWhatTextDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := moodPair(t)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE DOMAIN positive AS integer CHECK (VALUE > 0)`)
		pgtest.Exec(t, db.Pool, typedDDL)
		pgtest.Exec(t, db.Pool, `INSERT INTO typed VALUES (1, 1.5, '5b9f2c1e-8a38-4a36-9d45-8a2f6c1e0b11', '2025-01-01 10:00+00', '2025-01-01', true,
			'{}', '{1,2}', 'x', '\x01', 'ok', 0, '1 day', 1.0, 'Abc', '{"a":1}', 3)`)
	}
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "typed")
	if err != nil {
		t.Fatal(err)
	}
	hashable := map[string]bool{}
	for _, c := range tbl.Columns {
		hashable[c.Name] = c.Hashable
	}
	for _, name := range []string{"id", "n", "u", "ts", "d", "b", "arr", "t", "by"} {
		if !hashable[name] {
			t.Errorf("column %s is not Hashable, want its type's hash used", name)
		}
	}
	for _, name := range []string{"mood", "f", "iv", "free", "ci", "js", "dom", "j"} {
		if hashable[name] {
			t.Errorf("column %s is Hashable, want it hashed as text", name)
		}
	}
	// Across major versions (scripts/fetch-postgres) a typed hash is used
	// only where both servers have hash_record_extended (14 and later);
	// otherwise both hash the rows' text, which must tell the same apart.
	typed := true
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		ok, err := rowsync.SupportsTypedHash(ctx, db.Pool)
		if want := db.Server.MajorVersion(t) >= 14; err != nil || ok != want {
			t.Fatalf("SupportsTypedHash on PostgreSQL %d = %v, %v; want %v", db.Server.MajorVersion(t), ok, err, want)
		}
		typed = typed && ok
	}
	tbl.TypedHash = typed
	hash := func(db *pgtest.DB) rowsync.Summary {
		t.Helper()
		s, err := rowsync.HashRange(ctx, db.Pool, tbl, rowsync.Range{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if o, n := hash(p.Old), hash(p.New); o != n {
		t.Fatalf("identical rows: old %+v, new %+v; want equal hashes", o, n)
	}
	// Each change keeps the value equal by its type's own equality (so its
	// own hash would not see it) or changes it plainly; all print apart.
	for _, change := range []string{
		`f = '-0'`, `iv = '24 hours'`, `free = 1.00`, `ci = 'ABC'`, `js = '{"a": 1}'`, `j = '[]'`, `j = NULL`,
		`n = 1.51`, `ts = '2025-01-01 10:00:00.000001+00'`, `j = '{"a": 2}'`, `arr = '{2,1}'`, `t = 'x '`, `by = '\x0100'`, `mood = 'sad'`, `dom = 4`,
	} {
		pgtest.Exec(t, p.New.Pool, `UPDATE typed SET `+change)
		if o, n := hash(p.Old), hash(p.New); o == n {
			t.Errorf("SET %s on new: hashes equal, want them to differ", change)
		}
		pgtest.Exec(t, p.New.Pool, `DELETE FROM typed`)
		if _, _, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, [][]string{{"1"}}); err != nil {
			t.Fatal(err)
		}
		if o, n := hash(p.Old), hash(p.New); o != n {
			t.Fatalf("after copying the row back: old %+v, new %+v; want equal", o, n)
		}
	}
}

// TestKeyFingerprintTellsKeySetsApart: backfill's delete-race check compares
// the keys of a range on both sides by KeyFingerprint. Equal key sets give
// equal fingerprints on two servers whose enum OIDs differ, typed or as
// text; a key missing, or one key swapped for another (the same count),
// gives different ones; keys outside the range do not count.
func TestKeyFingerprintTellsKeySetsApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := moodPair(t)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE fp (mood mood, name text, id bigint, v text, PRIMARY KEY (mood, name, id));
			INSERT INTO fp SELECT (ARRAY['sad', 'ok'])[1 + i % 2]::mood, 'n' || i % 7, i, 'v' FROM generate_series(1, 500) AS i`)
	}
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "fp")
	if err != nil {
		t.Fatal(err)
	}
	typed, err := rowsync.TypedHashOnBoth(ctx, p.Old.Pool, p.New.Pool)
	if err != nil {
		t.Fatal(err)
	}
	// The range: every key after ('sad', 'n3', 0), up to the table's end.
	r := rowsync.Range{After: []string{"sad", "n3", "0"}}
	for _, mode := range []bool{false, typed} {
		tb := *tbl
		tb.TypedHash = mode
		same := func() bool {
			t.Helper()
			o, err := rowsync.KeyFingerprint(ctx, p.Old.Pool, &tb, r)
			if err != nil {
				t.Fatal(err)
			}
			n, err := rowsync.KeyFingerprint(ctx, p.New.Pool, &tb, r)
			if err != nil {
				t.Fatal(err)
			}
			return o == n
		}
		reset := func() {
			t.Helper()
			pgtest.Exec(t, p.New.Pool, `DELETE FROM fp; INSERT INTO fp SELECT (ARRAY['sad', 'ok'])[1 + i % 2]::mood, 'n' || i % 7, i, 'v' FROM generate_series(1, 500) AS i`)
		}
		if !same() {
			t.Fatalf("typed %v: equal key sets, different fingerprints", mode)
		}
		pgtest.Exec(t, p.New.Pool, `UPDATE fp SET v = 'changed'`)
		if !same() {
			t.Errorf("typed %v: values changed, keys not: fingerprints differ", mode)
		}
		pgtest.Exec(t, p.New.Pool, `DELETE FROM fp WHERE mood = 'ok' AND name = 'n5' AND id = 5`)
		if same() {
			t.Errorf("typed %v: a key missing on new, same fingerprint", mode)
		}
		pgtest.Exec(t, p.New.Pool, `INSERT INTO fp VALUES ('sad', 'n5', 1000, 'v')`)
		if same() {
			t.Errorf("typed %v: a key swapped for another on new, same fingerprint", mode)
		}
		reset()
		// ('sad', 'n1', ...) sorts before the range's start ('sad' is the
		// enum's first label): outside it.
		pgtest.Exec(t, p.New.Pool, `DELETE FROM fp WHERE mood = 'sad' AND name = 'n1' AND id = 8`)
		if !same() {
			t.Errorf("typed %v: a key outside the range missing: fingerprints differ", mode)
		}
		reset()
	}
}
