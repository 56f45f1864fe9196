package sequences_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/sequences"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func exec(t *testing.T, db *pgtest.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v\n%s", db.Name, err, sql)
	}
}

func scalar(t *testing.T, db *pgtest.DB, sql string) int64 {
	t.Helper()
	var v int64
	if err := db.Pool.QueryRow(context.Background(), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v\n%s", db.Name, err, sql)
	}
	return v
}

func sync(t *testing.T, p *pgtest.Pair, schema string, gap int64) map[string]sequences.Moved {
	t.Helper()
	moved, err := sequences.Sync(context.Background(), p.Old.Pool, p.New.Pool, schema, sequences.Options{Gap: gap})
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return byName(moved)
}

func byName(moved []sequences.Moved) map[string]sequences.Moved {
	out := map[string]sequences.Moved{}
	for _, m := range moved {
		out[m.Sequence] = m
	}
	return out
}

// insertUsersAndEvents makes n events on db (the reference domain), ids from
// the identity sequence.
func insertUsersAndEvents(t *testing.T, db *pgtest.DB, n int) {
	t.Helper()
	exec(t, db, `INSERT INTO users (id, email, name) VALUES ('00000000-0000-7000-8000-000000000001', 'a@example.com', 'a') ON CONFLICT DO NOTHING`)
	exec(t, db, `INSERT INTO events (user_id, kind) SELECT '00000000-0000-7000-8000-000000000001', 'k' FROM generate_series(1, $1)`, n)
}

func TestSyncMovesIdentitySequencePastEveryIDUsedOnOld(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	insertUsersAndEvents(t, p.Old, 250)
	insertUsersAndEvents(t, p.New, 3) // new handed out a few of its own

	m := sync(t, p, "public", 0)["public.events_id_seq"]
	want := sequences.Moved{Sequence: "public.events_id_seq", OwnedBy: "public.events.id", Old: 250, OwnedMax: m.OwnedMax,
		NewBefore: 3, NewAfter: 250 + sequences.DefaultGap, Moved: true}
	if m != want || m.OwnedMax == nil || *m.OwnedMax != 3 {
		t.Fatalf("got %+v, want %+v with OwnedMax 3", m, want)
	}
	insertUsersAndEvents(t, p.New, 1)
	maxOld := scalar(t, p.Old, `SELECT max(id) FROM events`)
	if got := scalar(t, p.New, `SELECT max(id) FROM events`); got <= maxOld {
		t.Fatalf("new's next identity value %d is not past old's ids (max %d)", got, maxOld)
	}
}

func TestSyncQuotedSerialAndPlainSequencesInOtherSchema(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		exec(t, db, `CREATE SCHEMA "Shop Data";
CREATE TABLE "Shop Data"."Order Items" ("Item ID" serial PRIMARY KEY, note text);
CREATE SEQUENCE "Shop Data"."Ticket No" START 100`)
	}
	exec(t, p.Old, `INSERT INTO "Shop Data"."Order Items" (note) SELECT 'x' FROM generate_series(1, 40)`)
	exec(t, p.Old, `SELECT nextval('"Shop Data"."Ticket No"') FROM generate_series(1, 7)`)

	got := sync(t, p, "Shop Data", 10)
	items := got[`"Shop Data"."Order Items_Item ID_seq"`]
	if items.Old != 40 || items.NewBefore != 0 || items.NewAfter != 50 || !items.Moved || items.OwnedBy != `"Shop Data"."Order Items"."Item ID"` {
		t.Fatalf("serial sequence: %+v", items)
	}
	ticket := got[`"Shop Data"."Ticket No"`]
	if ticket.Old != 106 || ticket.NewBefore != 99 || ticket.NewAfter != 116 || !ticket.Moved || ticket.OwnedBy != "" {
		t.Fatalf("plain sequence: %+v", ticket)
	}
	if next := scalar(t, p.New, `SELECT nextval('"Shop Data"."Ticket No"')`); next != 117 {
		t.Fatalf("nextval on new = %d, want 117", next)
	}
}

func TestSyncTwiceNeverMovesBackwards(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	insertUsersAndEvents(t, p.Old, 20)
	first := sync(t, p, "public", 100)["public.events_id_seq"]
	second := sync(t, p, "public", 100)["public.events_id_seq"]
	if !first.Moved || first.NewAfter != 120 || second.Moved || second.NewBefore != 120 || second.NewAfter != 120 {
		t.Fatalf("first %+v\nsecond %+v: the second run must leave 120 alone", first, second)
	}
	// new ran far ahead: Sync must not pull it back.
	exec(t, p.New, `SELECT setval('events_id_seq', 1000000)`)
	third := sync(t, p, "public", 100)["public.events_id_seq"]
	if third.Moved || third.NewAfter != 1000000 || scalar(t, p.New, `SELECT last_value FROM events_id_seq`) != 1000000 {
		t.Fatalf("third %+v: new was moved backwards", third)
	}
}

func TestSyncGoesPastRowsCopiedToNewWithExplicitIDs(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	insertUsersAndEvents(t, p.Old, 5)
	insertUsersAndEvents(t, p.New, 0)
	// A row old took with an explicit id, already copied to new.
	exec(t, p.New, `INSERT INTO events (id, user_id, kind) VALUES (5000, '00000000-0000-7000-8000-000000000001', 'k')`)
	m := sync(t, p, "public", 10)["public.events_id_seq"]
	if m.NewAfter != 5010 || m.OwnedMax == nil || *m.OwnedMax != 5000 {
		t.Fatalf("got %+v, want NewAfter 5010 past the owning column's 5000", m)
	}
}

func TestSyncDescendingSequenceMovesDown(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		exec(t, db, `CREATE SEQUENCE down INCREMENT BY -1`)
	}
	exec(t, p.Old, `SELECT nextval('down') FROM generate_series(1, 10)`)
	m := sync(t, p, "public", 5)["public.down"]
	if m.Old != -10 || m.NewBefore != 0 || m.NewAfter != -15 || !m.Moved {
		t.Fatalf("got %+v, want old -10, new 0 -> -15", m)
	}
}

func TestSequenceMissingOnNewIsAnErrorAfterTheOthers(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	exec(t, p.Old, `CREATE SEQUENCE a_only; CREATE SEQUENCE both_sides; SELECT nextval('both_sides')`)
	exec(t, p.New, `CREATE SEQUENCE both_sides; CREATE SEQUENCE new_only`)
	moved, err := sequences.Sync(context.Background(), p.Old.Pool, p.New.Pool, "public", sequences.Options{})
	if !errors.Is(err, sequences.ErrMissingOnNew) {
		t.Fatalf("err %v, want ErrMissingOnNew", err)
	}
	if len(moved) != 1 || moved[0].Sequence != "public.both_sides" || moved[0].NewAfter != 1+sequences.DefaultGap {
		t.Fatalf("moved %+v, want only both_sides synced", moved)
	}
}

func TestStatusPlansWithoutChanging(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	insertUsersAndEvents(t, p.Old, 30)
	got, err := sequences.Status(context.Background(), p.Old.Pool, p.New.Pool, "public", sequences.Options{Gap: 7})
	if err != nil {
		t.Fatal(err)
	}
	m := byName(got)["public.events_id_seq"]
	if !m.Moved || m.Old != 30 || m.NewBefore != 0 || m.NewAfter != 37 {
		t.Fatalf("plan %+v, want old 30, new 0 -> 37", m)
	}
	if called := scalar(t, p.New, `SELECT is_called::int FROM events_id_seq`); called != 0 {
		t.Fatal("Status changed new's sequence")
	}
}
