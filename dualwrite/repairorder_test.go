package dualwrite_test

import (
	"context"
	"slices"
	"testing"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// orderPair is a pair of databases with the tables given created on both
// sides, and a Repairer on them.
func orderPair(t *testing.T, ddl string) (*pgtest.Pair, *dualwrite.Repairer) {
	t.Helper()
	pair := pgtest.NewPair(t, pgtest.Domain)
	if ddl != "" {
		pgtest.Exec(t, pair.Old.Pool, ddl)
		pgtest.Exec(t, pair.New.Pool, ddl)
	}
	r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: pair.Old.Pool, New: pair.New.Pool})
	if err != nil {
		t.Fatal(err)
	}
	return pair, r
}

// logOnOld enters authoritative repair-log entries on old for rows of table
// (one single-column key each), in the order given.
func logOnOld(t *testing.T, pair *pgtest.Pair, table string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		pgtest.Exec(t, pair.Old.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', $1, ARRAY[$2::text], 'test')`, table, k)
	}
}

// drainInOnePass drains the logs and fails the test unless every entry was
// settled without one being postponed, and both sides hold the same rows of
// tables.
func drainInOnePass(t *testing.T, pair *pgtest.Pair, r *dualwrite.Repairer, tables ...string) dualwrite.DrainReport {
	t.Helper()
	rep, err := r.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Postponed != 0 {
		var lastErr string
		_ = pair.Old.Pool.QueryRow(context.Background(), `SELECT last_error FROM pgshift.repair_log WHERE last_error <> '' LIMIT 1`).Scan(&lastErr)
		t.Fatalf("drain postponed %d entries (%+v): %s", rep.Postponed, rep, lastErr)
	}
	for _, table := range tables {
		if o, n := pgtest.Dump(t, pair.Old.Pool, table), pgtest.Dump(t, pair.New.Pool, table); !slices.Equal(o, n) {
			t.Fatalf("%s differs after the drain:\nold %q\nnew %q", table, o, n)
		}
	}
	return rep
}

// TestRepairDeletesBeforeInsertingAReusedUniqueValue: new missed the delete
// of user R1 (email a) and the insert of R3 with email a. The delete must
// reach new before the insert, or the insert hits users_email_key forever.
func TestRepairDeletesBeforeInsertingAReusedUniqueValue(t *testing.T) {
	t.Parallel()
	pair, r := orderPair(t, "")
	r1, r3 := "00000000-0000-7000-8000-000000000001", "00000000-0000-7000-8000-000000000003"
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		pgtest.Exec(t, db.Pool, `INSERT INTO users (id, email, name) VALUES ($1, 'a@example.com', 'r1')`, r1)
	}
	pgtest.Exec(t, pair.Old.Pool, `DELETE FROM users WHERE id = $1`, r1)
	pgtest.Exec(t, pair.Old.Pool, `INSERT INTO users (id, email, name, created_at, updated_at) VALUES ($1, 'a@example.com', 'r3', '2024-01-01', '2024-01-01')`, r3)
	logOnOld(t, pair, "users", r3, r1) // the insert first: the worst order
	drainInOnePass(t, pair, r, "users")
}

// TestRepairWritesRowsSwappingAUniqueValue: new missed a swap of two
// handles between two rows; no order of single upserts can write it.
func TestRepairWritesRowsSwappingAUniqueValue(t *testing.T) {
	t.Parallel()
	pair, r := orderPair(t, `CREATE TABLE handles (id int PRIMARY KEY, handle text NOT NULL UNIQUE);
		INSERT INTO handles VALUES (1, 'x'), (2, 'y'), (3, 'z')`)
	pgtest.Exec(t, pair.Old.Pool, `UPDATE handles SET handle = 'tmp' WHERE id = 1;
		UPDATE handles SET handle = 'x' WHERE id = 2; UPDATE handles SET handle = 'y' WHERE id = 1;
		UPDATE handles SET handle = 'w' WHERE id = 3`)
	logOnOld(t, pair, "handles", "1", "2", "3")
	drainInOnePass(t, pair, r, "handles")
}

// TestRepairIsolatesAFailingRow: one row new refuses (a check constraint
// only new has) is postponed alone; the other rows of its table and pass
// are written.
func TestRepairIsolatesAFailingRow(t *testing.T) {
	t.Parallel()
	pair, r := orderPair(t, `CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)`)
	pgtest.Exec(t, pair.New.Pool, `ALTER TABLE notes ADD CHECK (body <> 'refused on new')`)
	pgtest.Exec(t, pair.Old.Pool, `INSERT INTO notes VALUES (1, 'fine'), (2, 'refused on new'), (3, 'fine too')`)
	logOnOld(t, pair, "notes", "1", "2", "3")
	rep, err := r.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Row 2 is postponed at least once: a Drain that takes longer than the
	// entry's back-off (a loaded machine) tries it again in a later pass
	// and counts it again, so the count is a lower bound.
	if rep.OldToNew != 2 || rep.Postponed < 1 {
		t.Errorf("drain settled %d and postponed %d entries; want 2 and at least 1", rep.OldToNew, rep.Postponed)
	}
	if got := pgtest.Dump(t, pair.New.Pool, "notes"); !slices.Equal(got, []string{"(1,fine)", "(3,\"fine too\")"}) {
		t.Errorf("new holds %q; want rows 1 and 3", got)
	}
	var key []string
	if err := pair.Old.Pool.QueryRow(context.Background(), `SELECT key FROM pgshift.repair_log`).Scan(&key); err != nil || !slices.Equal(key, []string{"2"}) {
		t.Errorf("the log holds %v (err %v); want only row 2's entry", key, err)
	}
}

// TestDrainFollowsForeignKeysAcrossTheSidesLogs: new holds a parent and its
// child that old lacks; the parent's entry is on new (authoritative: copy to
// old), the child's on old (a pull entry: copy from new into old), as a
// write in live whose copy on old failed leaves them. Old's log is drained
// first, and the child cannot go before its parent: one Drain must still
// settle both (the child again once the parent is there), postponing
// nothing.
func TestDrainFollowsForeignKeysAcrossTheSidesLogs(t *testing.T) {
	t.Parallel()
	pair, r := orderPair(t, `CREATE TABLE parent (id int PRIMARY KEY);
		CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id))`)
	pgtest.Exec(t, pair.New.Pool, `INSERT INTO parent VALUES (1); INSERT INTO child VALUES (10, 1);
		INSERT INTO pgshift.repair_log (table_schema, table_name, key, op) VALUES ('public', 'parent', '{1}', 'test')`)
	pgtest.Exec(t, pair.Old.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, pull) VALUES ('public', 'child', '{10}', 'test', true)`)
	rep := drainInOnePass(t, pair, r, "parent", "child")
	if rep.NewToOld != 2 || rep.OldToNew != 0 {
		t.Fatalf("drain: %+v, want both rows copied new -> old (the child's pull entry copies into old)", rep)
	}
}

// TestRepairFollowsForeignKeysInOnePass: new missed a parent and its child
// being deleted and another parent and child being inserted, logged
// children first. One pass must delete the child before its parent and
// insert the parent before its child.
func TestRepairFollowsForeignKeysInOnePass(t *testing.T) {
	t.Parallel()
	pair, r := orderPair(t, `CREATE TABLE parent (id int PRIMARY KEY);
		CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent (id));
		INSERT INTO parent VALUES (1); INSERT INTO child VALUES (10, 1)`)
	pgtest.Exec(t, pair.Old.Pool, `DELETE FROM child; DELETE FROM parent;
		INSERT INTO parent VALUES (2); INSERT INTO child VALUES (20, 2)`)
	logOnOld(t, pair, "child", "20")
	logOnOld(t, pair, "parent", "1", "2")
	logOnOld(t, pair, "child", "10")
	drainInOnePass(t, pair, r, "parent", "child")
}
