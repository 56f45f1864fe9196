package rowsync_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// TestApplyNeverDeletesRowsThatCascade: rows swapping a unique value are
// written by replacing them, which a table that ON DELETE CASCADE foreign
// keys reference cannot allow (the children would go). Apply reports both
// rows as failed, with the reason, and leaves the destination's children.
func TestApplyNeverDeletesRowsThatCascade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE acct (id int PRIMARY KEY, handle text NOT NULL UNIQUE);
			CREATE TABLE note (id int PRIMARY KEY, acct int NOT NULL REFERENCES acct ON DELETE CASCADE);
			INSERT INTO acct VALUES (1, 'x'), (2, 'y'); INSERT INTO note VALUES (10, 1), (20, 2)`)
	}
	pgtest.Exec(t, p.Old.Pool, `UPDATE acct SET handle = 'tmp' WHERE id = 1; UPDATE acct SET handle = 'x' WHERE id = 2; UPDATE acct SET handle = 'y' WHERE id = 1`)
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "acct")
	if err != nil {
		t.Fatal(err)
	}
	src, err := rowsync.ReadKeys(ctx, p.Old.Pool, tbl, [][]string{{"1"}, {"2"}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := p.New.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	failed, err := rowsync.Apply(ctx, tx, []*rowsync.Source{src})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || !strings.Contains(failed[0].Err.Error(), "acct_handle_key") {
		t.Fatalf("failed %+v, want both rows refused for acct_handle_key", failed)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := pgtest.Dump(t, p.New.Pool, "note"); !slices.Equal(got, []string{"(10,1)", "(20,2)"}) {
		t.Fatalf("new's notes %q, want both kept", got)
	}
}

// TestApplySwapsNullableUniqueValuesOfRowsThatCascade: where the unique
// columns allow NULL, rows swapping a value on a table that ON DELETE CASCADE
// foreign keys reference are written without a delete: the values are freed
// (set to NULL) and the rows upserted, and the children stay.
func TestApplySwapsNullableUniqueValuesOfRowsThatCascade(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE acct (id int PRIMARY KEY, handle text UNIQUE, v text);
			CREATE TABLE note (id int PRIMARY KEY, acct int NOT NULL REFERENCES acct ON DELETE CASCADE);
			INSERT INTO acct VALUES (1, 'x', 'a'), (2, 'y', 'b'); INSERT INTO note VALUES (10, 1), (20, 2)`)
	}
	pgtest.Exec(t, p.Old.Pool, `UPDATE acct SET handle = NULL WHERE id = 1; UPDATE acct SET handle = 'x', v = 'b2' WHERE id = 2; UPDATE acct SET handle = 'y' WHERE id = 1`)
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "acct")
	if err != nil {
		t.Fatal(err)
	}
	src, err := rowsync.ReadKeys(ctx, p.Old.Pool, tbl, [][]string{{"1"}, {"2"}})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := p.New.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	failed, err := rowsync.Apply(ctx, tx, []*rowsync.Source{src})
	if err != nil || len(failed) > 0 {
		t.Fatalf("Apply: failed %+v, err %v; want both rows written", failed, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := pgtest.Dump(t, p.New.Pool, "acct"), pgtest.Dump(t, p.Old.Pool, "acct"); !slices.Equal(got, want) {
		t.Fatalf("new's accounts %q, want old's %q", got, want)
	}
	if got := pgtest.Dump(t, p.New.Pool, "note"); !slices.Equal(got, []string{"(10,1)", "(20,2)"}) {
		t.Fatalf("new's notes %q, want both kept", got)
	}
}
