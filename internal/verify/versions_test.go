package verify_test

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// valuesDDL has a column of each type whose text form or hash is known to
// move between servers or major versions: unconstrained and constrained
// numeric (1.0 and 1.00 are equal and print apart), floats (-0, NaN,
// subnormals), timestamptz and timestamp (infinities, microseconds),
// interval ('1 day' and '24 hours' are equal), arrays (the array hash
// ignores bounds), ranges (canonical forms), jsonb (normalized) and json
// (kept as written), an enum (its hash is of label OIDs, which differ
// between databases), text under a case-insensitive ICU collation and
// under a deterministic ICU one.
const valuesDDL = `
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE COLLATION de (provider = icu, locale = 'de');
CREATE TABLE vals (
	id int PRIMARY KEY,
	n numeric, n2 numeric(12,3), f4 real, f8 float8, ts timestamptz, t timestamp, iv interval,
	ia int[], ta text[], ir int4range, nr numrange, tr tstzrange, j jsonb, js json,
	m mood, ci text COLLATE ci, de text COLLATE de, vc varchar(10), bp char(5)
)`

// valuesRow is the row every id from 1 to 30 starts with, and the rows
// that differ from it: infinities, NaN, extremes and NULLs.
const valuesRows = `
INSERT INTO vals SELECT i, 1.0, 1.5, '-0', '-0', '2025-03-30 01:30:00.123456+00', '2025-03-30 01:30:00.5', '1 day',
	'{1,2}', '{"a b",NULL,"\"q\""}', '[1,3)', '[1.0,2.50)', '[2025-01-01 00:00+00,infinity)',
	'{"b": 1, "a": [1.0, 2e3, "x"]}', '{"b": 1,  "a": 1}', 'ok', 'Abc', 'Straße', 'x', 'ab'
	FROM generate_series(1, 30) AS i;
INSERT INTO vals VALUES
	(31, 'NaN', NULL, 'NaN', 'Infinity', '-infinity', 'infinity', '1 mon -1 day -00:00:00.000001',
	 '[0:1]={1,2}', '{}', 'empty', '(,)', '(,)', '[]', '[]', 'sad', 'abc', 'strasse', '', '     '),
	(32, 123456789012345678901234567890.123456789012345678901, -999999999.999, 1.17549435e-38, 5e-324,
	 '294276-12-31 23:59:59.999999+00', '4713-01-01 00:00:00 BC', '-178000000 years',
	 '{{1,2},{3,4}}', '{"{}",",","NULL"}', '[-2147483648,2147483647)', '[-1e20,1e-20]', 'empty',
	 '{"n": 1.000000000000000000001, "s": "\u00e9\\\"", "z": null}', '{"a":[1.0,1e400]}', 'happy', 'ÄBC', 'Ä', 'ünïcödé', 'é'),
	(33, 0.1 + 0.2, 0, 0.1, 0.1 + 0.2, '1999-12-31 23:59:59.999999-11:30', '2000-02-29 00:00', '1 year 2 mons 3 days 04:05:06.789',
	 '{NULL}', '{""}', '[5,6)', '[0.000000000000000001,0.1)', '[2000-01-01 00:00+14,2000-01-01 00:00-12)',
	 '{"a": {"b": {"c": [[], {}]}}}', 'null', 'ok', '', 'ß', '0123456789', 'abcde'),
	(34, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`

// change is an UPDATE made on new only, to one row.
type change struct {
	set string
	// sameText is set for changes that keep the value the same in every
	// way a reader sees (the row's text form): verify must find the row
	// equal. The others keep the value equal by its type's own equality (so
	// its own hash may not see the change) or change it plainly, and print
	// apart: verify must find the row different.
	sameText bool
}

var changes = []change{
	{`j = '{"a": [1.0, 2e3, "x"], "b": 1}'`, true},  // jsonb normalizes key order
	{`ts = '2025-03-30 03:30:00.123456+02'`, true},  // the same instant
	{`ir = '[1,2]'`, true},                          // canonical [1,3)
	{`n2 = 1.500`, true},                            // the column's scale is 3 anyway
	{`tr = '[2025-01-01 01:00+01,infinity)'`, true}, // the same instant
	{`ia = '[1:2]={1,2}'`, true},                    // the default lower bound
	{`bp = 'ab '`, true},                            // char pads anyway
	{`f8 = '0'`, false},                             // 0 = -0
	{`f4 = '0'`, false},
	{`n = 1.00`, false}, // 1.0 = 1.00
	{`iv = '24 hours'`, false},
	{`ia = '[0:1]={1,2}'`, false}, // the array hash ignores bounds
	{`ia = '{{1,2}}'`, false},     // and dimensions
	{`ci = 'ABC'`, false},         // equal under the collation
	{`de = 'strasse'`, false},
	{`js = '{"b": 1, "a": 1}'`, false}, // json keeps what was written
	{`nr = '[1.00,2.5)'`, false},       // equal bounds
	{`j = '{"b": 1, "a": [1.00, 2e3, "x"]}'`, false},
	{`m = 'sad'`, false},
	{`ts = ts + interval '1 microsecond'`, false},
	{`t = t - interval '1 microsecond'`, false},
	{`ta = '{"a b",NULL,"\"q\"",""}'`, false},
	{`vc = 'x '`, false},
	{`tr = '[2025-01-01 00:00+00,infinity]'`, false},
	{`n2 = 1.501`, false},
}

// multirangeChanges apply where both servers have multiranges (14 and later).
var multirangeChanges = []change{
	{`mr = '{[5,8), [1,2], [2,2]}'`, true}, // canonical {[1,3),[5,8)}
	{`mr = '{[1,3), [5,8]}'`, false},
}

// TestVerifyAcrossVersionsNeverLies backfills rows whose values print or hash
// differently across servers and major versions from old to new, then
// proves that verify finds the copy equal in both modes, and that after
// changes on new it finds exactly the changed rows whose text changed,
// none of those whose text stayed the same. Run with old and new on
// different major versions (scripts/fetch-postgres, PGSHIFT_OLD_BINDIR,
// PGSHIFT_NEW_BINDIR) it proves the typed hash is used only where both
// versions hash alike; on one version it holds all the same.
func TestVerifyAcrossVersionsNeverLies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	// On new the enum comes after another type, so its labels' OIDs differ.
	pgtest.Exec(t, p.New.Pool, `CREATE TYPE spare AS ENUM ('x', 'y', 'z')`)
	multirange := p.Old.Server.MajorVersion(t) >= 14 && p.New.Server.MajorVersion(t) >= 14
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`)
		pgtest.Exec(t, db.Pool, valuesDDL)
		if multirange {
			pgtest.Exec(t, db.Pool, `ALTER TABLE vals ADD COLUMN mr int4multirange DEFAULT '{[1,3), [5,7]}'`)
		}
	}
	pgtest.Exec(t, p.Old.Pool, valuesRows)
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "vals")
	if err != nil {
		t.Fatal(err)
	}
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{ChunkSize: 10})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	// Each side renders its own rows: the copy reads back as old's text.
	if o, n := pgtest.Dump(t, p.Old.Pool, "vals"), pgtest.Dump(t, p.New.Pool, "vals"); !slices.Equal(o, n) {
		t.Fatalf("backfilled rows read back differently:\nold %q\nnew %q", o, n)
	}
	for _, m := range modes {
		if r := run(t, p, tbl, m.opts); r.Differences() != 0 || r.Rows != 34 {
			t.Fatalf("%s: equal copy: %+v, want 34 rows, no differences", m.name, r)
		}
	}

	all := changes
	if multirange {
		all = append(slices.Clone(changes), multirangeChanges...)
	}
	rowText := func(db *pgtest.DB, id int) string {
		t.Helper()
		var text string
		if err := db.Pool.QueryRow(ctx, `SELECT v::text FROM vals AS v WHERE id = $1`, id).Scan(&text); err != nil {
			t.Fatal(err)
		}
		return text
	}
	var want [][]string
	for i, c := range all {
		id := i + 1
		pgtest.Exec(t, p.New.Pool, `UPDATE vals SET `+c.set+` WHERE id = $1`, id)
		// The test's own premise, checked: which changes keep the text.
		if same := rowText(p.Old, id) == rowText(p.New, id); same != c.sameText {
			t.Fatalf("SET %s: row text the same = %v, want %v", c.set, same, c.sameText)
		}
		if !c.sameText {
			want = append(want, []string{strconv.Itoa(id)})
		}
	}
	for _, m := range modes {
		opts := m.opts
		opts.Examples = len(want)
		r := run(t, p, tbl, opts)
		got := slices.Clone(r.Examples.Different)
		slices.SortFunc(got, func(a, b []string) int { x, _ := strconv.Atoi(a[0]); y, _ := strconv.Atoi(b[0]); return x - y })
		if r.Missing != 0 || r.Extra != 0 || r.Different != len(want) || !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s: %d different %v (missing %d, extra %d); want exactly %v", m.name, r.Different, got, r.Missing, r.Extra, want)
		}
	}
}
