package verify_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/verify"
	"github.com/pgshift/pgshift/repo"
)

// verify --changed compares the rows dual writes changed since the last full
// verify, the settled ones (dual-write history) and the ones still in a
// repair log, and nothing else: drift outside those rows is a full verify's
// to find.
func TestVerifyChangedComparesOnlyRowsDualWritesChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, users := domainUsers(t)
	changed := func() verify.Result {
		t.Helper()
		return run(t, p, users, verify.Options{Changed: true})
	}
	if res, err := verify.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{users}, verify.Options{Changed: true}); err != nil {
		t.Fatal(err)
	} else if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), `no full verify of "public"."users" is recorded`) {
		t.Fatalf("--changed before any full verify: %v, want an error asking for a full verify first", res[0].Err)
	}

	ids := make([]uuid.UUID, 100)
	for i := range ids {
		ids[i] = uuid.New()
		for _, db := range []*pgtest.DB{p.Old, p.New} {
			pgtest.Exec(t, db.Pool, `INSERT INTO users (id, email, name, country, plan, created_at, updated_at) VALUES ($1, $2, 'u', 'IN', 'free', '2026-01-01', '2026-01-01')`,
				ids[i], ids[i].String()+"@example.com")
		}
	}
	if r := run(t, p, users, verify.Options{}); r.Kind != verify.KindFull || r.Differences() != 0 || r.Rows != 100 {
		t.Fatalf("full verify: %+v, want 100 equal rows", r)
	}
	if r := changed(); r.Kind != verify.KindChanged || r.Rows != 0 || r.Differences() != 0 {
		t.Fatalf("--changed with nothing written: %+v, want 0 rows compared", r)
	}

	// Five dual writes; new rejects the fifth, which stays in old's log.
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: p.Old.Pool, New: p.New.Pool, Stages: flags.Static(flags.StageDualWrite), RepairDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pgtest.Exec(t, p.New.Pool, `CREATE FUNCTION reject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'rejected'; END $$;
		CREATE TRIGGER reject BEFORE UPDATE ON users FOR EACH ROW WHEN (NEW.name = 'rejected') EXECUTE FUNCTION reject()`)
	store := repo.New(f)
	uctx := flags.WithUser(ctx, "u", nil)
	for i := range 5 {
		name := "written"
		if i == 4 {
			name = "rejected"
		}
		if _, err := store.Users.Update(uctx, ids[i], repo.UserUpdate{Name: name, Country: "IN", Plan: "free"}); err != nil {
			t.Fatal(err)
		}
	}
	f.Wait()

	// Drift on a row no dual write changed: not --changed's to see.
	pgtest.Exec(t, p.New.Pool, `UPDATE users SET name = 'drift' WHERE id = $1`, ids[50])
	// Drift on a row a dual write changed: seen.
	pgtest.Exec(t, p.New.Pool, `UPDATE users SET name = 'drift' WHERE id = $1`, ids[1])
	r := changed()
	if r.Rows != 5 || r.Different != 2 {
		t.Fatalf("--changed: %d rows compared, %d different (%+v); want the 5 written, 2 of them different (the drifted and the rejected)", r.Rows, r.Different, r.Examples)
	}
	for _, k := range r.Examples.Different {
		if k[0] == ids[50].String() {
			t.Fatalf("--changed compared a row no dual write changed: %v", k)
		}
	}

	// Once the rejected write is repaired, its row moves from the log to
	// the history and is still compared.
	pgtest.Exec(t, p.New.Pool, `DROP TRIGGER reject ON users`)
	pgtest.Exec(t, p.New.Pool, `UPDATE users SET name = 'written' WHERE id = $1`, ids[1])
	if _, err := f.Repairer().Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if r := changed(); r.Rows != 5 || r.Differences() != 0 {
		t.Fatalf("--changed after repair: %+v, want 5 rows compared, equal", r)
	}
	if r := run(t, p, users, verify.Options{}); r.Different != 1 {
		t.Fatalf("full verify: %+v, want the drift outside the changed rows found", r)
	}
}

// --changed refuses to stand on a full verify that left differences, and on
// one a backfill of the table came after.
func TestVerifyChangedNeedsAnEqualFullVerifyAndNoBackfillSince(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, users := domainUsers(t)
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (id, email, name, country, plan, created_at) VALUES (gen_random_uuid(), 'a@example.com', 'a', 'IN', 'free', now())`)
	run(t, p, users, verify.Options{})
	changedErr := func() string {
		t.Helper()
		res, err := verify.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{users}, verify.Options{Changed: true})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err == nil {
			return ""
		}
		return res[0].Err.Error()
	}
	if got := changedErr(); !strings.Contains(got, "left differences: run pgshift verify --repair --table users") {
		t.Fatalf("after an unequal full verify: %q, want a refusal naming the fix", got)
	}
	run(t, p, users, verify.Options{Repair: true})
	if got := changedErr(); !strings.Contains(got, "left differences") {
		t.Fatalf("after a full verify that entered its differences in the repair log: %q, want a refusal until a verify finds the table equal", got)
	}
	drain(t, p)
	run(t, p, users, verify.Options{})
	if got := changedErr(); got != "" {
		t.Fatalf("after the repair drained and a full verify found the table equal: %q, want --changed to run", got)
	}
	pgtest.Exec(t, p.New.Pool, `INSERT INTO pgshift.backfill_chunks (table_schema, table_name, chunk, done_at) VALUES ('public', 'users', 0, now() + interval '1 second')`)
	if got := changedErr(); !strings.Contains(got, `a backfill of "public"."users" ran after its last full verify`) {
		t.Fatalf("after a backfill: %q, want a refusal asking for a full verify", got)
	}
}

// domainUsers is a fresh pair with the reference domain and pgshift
// installed, and its users table.
func domainUsers(t *testing.T) (*pgtest.Pair, *rowsync.Table) {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Domain)
	users, err := rowsync.LoadTable(context.Background(), p.Old.Pool, "public", "users")
	if err != nil {
		t.Fatal(err)
	}
	return p, users
}
