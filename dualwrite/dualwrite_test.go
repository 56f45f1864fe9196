package dualwrite_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
)

func TestMain(m *testing.M) { pgtest.MainExporting(m, "PGSHIFT_OLD_URL", "PGSHIFT_NEW_URL") }

// stageVar is a flags.Source whose stage a test sets.
type stageVar struct{ v atomic.Uint32 }

func (s *stageVar) Stage(context.Context) flags.Stage { return flags.Stage(s.v.Load()) }
func (s *stageVar) Set(st flags.Stage)                { s.v.Store(uint32(st)) }

type bundle struct {
	pair   *pgtest.Pair
	stage  *stageVar
	facade *dualwrite.Facade
	store  *repo.Store
}

func (b *bundle) pool(side flags.Side) *pgxpool.Pool {
	if side == flags.SideNew {
		return b.pair.New.Pool
	}
	return b.pair.Old.Pool
}

// setup returns a fresh pair of databases with the reference schema, a
// facade in the given stage over them, and the repositories.
func setup(t testing.TB, stage flags.Stage, cfg ...func(*dualwrite.Config)) *bundle {
	t.Helper()
	return setupOn(t, pgtest.NewPair(t, pgtest.Domain), stage, cfg...)
}

func setupOn(t testing.TB, pair *pgtest.Pair, stage flags.Stage, cfg ...func(*dualwrite.Config)) *bundle {
	t.Helper()
	b := &bundle{pair: pair, stage: &stageVar{}}
	b.stage.Set(stage)
	c := dualwrite.Config{Old: pair.Old.Pool, New: pair.New.Pool, Stages: b.stage, OtherTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))}
	c.Repair.Interval = 50 * time.Millisecond
	c.Repair.MaxBackoff = 500 * time.Millisecond
	// Tests that count shadow reads compare every read, however slow the
	// loaded machine makes the other side (TestShadowReadsBoundedAndDropped
	// tests the bound).
	c.ShadowConcurrency = 1000
	for _, fn := range cfg {
		fn(&c)
	}
	f, err := dualwrite.New(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	b.facade, b.store = f, repo.New(f)
	return b
}

// count returns how many rows of table match where on one side.
func count(t testing.TB, p *pgxpool.Pool, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := p.QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// requireEqualSides fails unless both sides hold the same rows in every
// table of the reference domain.
func requireEqualSides(t *testing.T, oldDB, newDB *pgxpool.Pool) {
	t.Helper()
	for _, table := range []string{"users", "posts", "events"} {
		o, n := pgtest.Dump(t, oldDB, table), pgtest.Dump(t, newDB, table)
		if strings.Join(o, "\n") != strings.Join(n, "\n") {
			t.Fatalf("%s differs: old has %d rows, new has %d\nold: %.400v\nnew: %.400v", table, len(o), len(n), o, n)
		}
	}
}

// waitDrained waits until both repair logs are empty.
func waitDrained(t *testing.T, f *dualwrite.Facade, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f.Wait()
		b, err := f.Repairer().Backlog(context.Background())
		if err == nil && b.Entries() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("repair log not drained after %v: backlog %+v, err %v", timeout, b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stageCase is one stage under one way of connecting.
type stageCase struct {
	name    string
	stage   flags.Stage
	pooling pgtest.Pooled
}

// stagesAndPoolings is every given stage, directly and through PgBouncer.
func stagesAndPoolings(stages ...flags.Stage) []stageCase {
	var out []stageCase
	for _, st := range stages {
		for _, p := range pgtest.Poolings() {
			out = append(out, stageCase{name: st.String() + "/" + p.String(), stage: st, pooling: p})
		}
	}
	return out
}

func userCtx(id string) context.Context {
	return flags.WithUser(context.Background(), id, nil)
}

// firstError keeps the first error its writers report. Unlike an
// atomic.Value it takes errors of any concrete type: a Value panics when a
// second failure's type differs from the first's, which hid a failing run's
// errors behind a panic.
type firstError struct {
	once sync.Once
	err  error
}

func (f *firstError) set(err error) { f.once.Do(func() { f.err = err }) }

// get is called after the writers are done.
func (f *firstError) get() error { return f.err }

// TestStagesRouteWritesAndReads checks, for every stage, that creates,
// updates and deletes land exactly on the sides the stage table says, and that
// reads are answered by the authoritative side (the two sides are made to
// differ on purpose to tell them apart).
func TestStagesRouteWritesAndReads(t *testing.T) {
	t.Parallel()
	for _, stage := range flags.AllStages() {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t, stage)
			ctx, outcome := dualwrite.WithOutcome(userCtx("u1"))
			plan := stage.Plan()
			auth, other := plan.Authoritative, plan.Authoritative.Other()
			want := func(side flags.Side) int {
				if side == auth || plan.WriteOther {
					return 1
				}
				return 0
			}

			u, err := b.store.Users.Create(ctx, repo.NewUser{Email: "a@example.com", Name: "Ada", Country: "IN", Plan: "pro"})
			if err != nil {
				t.Fatal(err)
			}
			if outcome.Stage != stage || outcome.Served != auth {
				t.Fatalf("outcome = %+v, want stage %v served by %v", outcome, stage, auth)
			}
			e, err := b.store.Events.Create(ctx, repo.NewEvent{UserID: u.ID, Kind: "signup"})
			if err != nil {
				t.Fatal(err)
			}
			b.facade.Wait()
			for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
				if got := count(t, b.pool(side), "users", "id = $1", u.ID); got != want(side) {
					t.Fatalf("after create: %v has %d users, want %d", side, got, want(side))
				}
				// The identity key assigned by the authoritative side is the key on both.
				if got := count(t, b.pool(side), "events", "id = $1", e.ID); got != want(side) {
					t.Fatalf("after create: %v has %d events with id %d, want %d", side, got, e.ID, want(side))
				}
			}
			if plan.WriteOther {
				requireEqualSides(t, b.pair.Old.Pool, b.pair.New.Pool)
			}

			if _, err := b.store.Users.Update(ctx, u.ID, repo.UserUpdate{Name: "Ada L.", Country: "US", Plan: "pro"}); err != nil {
				t.Fatal(err)
			}
			b.facade.Wait()
			for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
				if got := count(t, b.pool(side), "users", "id = $1 AND name = 'Ada L.'", u.ID); got != want(side) {
					t.Fatalf("after update: %v has %d updated users, want %d", side, got, want(side))
				}
			}

			// Make the sides differ: the answer tells which side served the read.
			for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
				if _, err := b.pool(side).Exec(context.Background(),
					"INSERT INTO users (id, email, name) VALUES ($1, 'x@example.com', $2) ON CONFLICT (id) DO UPDATE SET name = $2",
					u.ID, "from-"+side.String()); err != nil {
					t.Fatal(err)
				}
			}
			got, err := b.store.Users.Get(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != "from-"+auth.String() || outcome.Served != auth {
				t.Fatalf("read answered %q (served %v), want from-%v", got.Name, outcome.Served, auth)
			}

			if err := b.store.Users.Delete(ctx, u.ID); err != nil {
				t.Fatal(err)
			}
			b.facade.Wait()
			if got := count(t, b.pool(auth), "users", "id = $1", u.ID); got != 0 {
				t.Fatalf("after delete: %v (authoritative) still has the user", auth)
			}
			wantOther := 1 // written by hand above; a stage that does not write other leaves it
			if plan.WriteOther {
				wantOther = 0
			}
			if got := count(t, b.pool(other), "users", "id = $1", u.ID); got != wantOther {
				t.Fatalf("after delete: %v has %d users, want %d", other, got, wantOther)
			}
			if _, err := b.store.Users.Get(ctx, u.ID); !errors.Is(err, repo.ErrNotFound) {
				t.Fatalf("Get after delete: %v, want repo.ErrNotFound", err)
			}
		})
	}
}

// TestOtherSideDown stops the other side during dualwrite and during live:
// 1,000 writes from 16 goroutines must all succeed, the backlog must grow,
// and once the server is back the backlog drains and the sides are equal.
// It runs with direct connections and through PgBouncer.
func TestOtherSideDown(t *testing.T) {
	t.Parallel()
	for _, tc := range stagesAndPoolings(flags.StageDualWrite, flags.StageLive) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stage := tc.stage
			oldSrv, newSrv := pgtest.Dedicated(t)
			b := setupOn(t, pgtest.PairOn(t, oldSrv, newSrv, pgtest.Domain).Via(t, tc.pooling), stage)
			otherSrv := newSrv
			if stage.Plan().Authoritative == flags.SideNew {
				otherSrv = oldSrv
			}
			// Some rows exist on both sides before the outage.
			ctx := userCtx("owner")
			owner, err := b.store.Users.Create(ctx, repo.NewUser{Email: "owner@example.com", Name: "Owner"})
			if err != nil {
				t.Fatal(err)
			}
			b.facade.Wait()
			const writers, perWriter = 16, 63 // 1,008 writes
			// Each writer's user is caught up before the outage: a first
			// move to new waits for old (TestFirstFlipWithOldSilentRefusesTheKey).
			for w := range writers {
				key := fmt.Sprintf("writer-%d", w)
				catchUpFirst(t, b.pool(flags.SideNew), key, stage.Plan().Authoritative, readAs(b.store, key))
			}

			if err := otherSrv.Launched.Stop(); err != nil {
				t.Fatal(err)
			}
			var failures atomic.Int64
			var firstErr firstError
			var wg sync.WaitGroup
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := userCtx(fmt.Sprintf("writer-%d", w))
					var last uuid.UUID
					for i := 0; i < perWriter; i++ {
						var err error
						switch i % 3 {
						case 2:
							_, err = b.store.Users.Update(ctx, last, repo.UserUpdate{Name: fmt.Sprintf("n%d", i), Country: "DE", Plan: "pro"})
						case 1:
							_, err = b.store.Posts.Create(ctx, repo.NewPost{UserID: owner.ID, Title: "p", Body: "b"})
						default:
							var u = repo.NewUser{Email: fmt.Sprintf("w%d-%d@example.com", w, i), Name: "w"}
							var got, e = b.store.Users.Create(ctx, u)
							last, err = got.ID, e
						}
						if err != nil {
							failures.Add(1)
							firstErr.set(err)
						}
					}
				}()
			}
			wg.Wait()
			b.facade.Wait()
			if n := failures.Load(); n != 0 {
				t.Fatalf("%d of %d writes failed with the other side down; first: %v", n, writers*perWriter, firstErr.get())
			}
			backlog, err := b.facade.Repairer().Backlog(context.Background())
			if err == nil {
				t.Fatalf("reading both backlogs succeeded with a side down")
			}
			auth := stage.Plan().Authoritative
			var authBacklog int
			if err := b.pool(auth).QueryRow(context.Background(), "SELECT count(*) FROM pgshift.repair_log").Scan(&authBacklog); err != nil {
				t.Fatal(err)
			}
			if authBacklog < writers*perWriter {
				t.Fatalf("backlog on %v = %d entries, want at least %d (one per write); %+v", auth, authBacklog, writers*perWriter, backlog)
			}

			if err := otherSrv.Launched.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitDrained(t, b.facade, 90*time.Second)
			requireEqualSides(t, b.pair.Old.Pool, b.pair.New.Pool)
			if got := count(t, b.pool(auth.Other()), "users", "true"); got != 1+writers*(perWriter/3) {
				t.Fatalf("other side has %d users, want %d", got, 1+writers*(perWriter/3))
			}
		})
	}
}

// TestAuthoritativeSideDown stops the authoritative side: callers get
// errors, and no write is half-done anywhere once it is back. Users.Create
// is a NewRows write, whose sides run at once: when old fails only after
// both have started (seen once in a full run under load), new may have
// committed its copy. Such a copy must carry a pull record (copy this row
// from old), so that the repair worker removes it once old is back.
func TestAuthoritativeSideDown(t *testing.T) {
	t.Parallel()
	oldSrv, newSrv := pgtest.Dedicated(t)
	b := setupOn(t, pgtest.PairOn(t, oldSrv, newSrv, pgtest.Domain), flags.StageDualWrite)
	if err := oldSrv.Launched.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx := userCtx("u")
	for i := 0; i < 20; i++ {
		if _, err := b.store.Users.Create(ctx, repo.NewUser{Email: fmt.Sprintf("%d@example.com", i), Name: "x"}); err == nil {
			t.Fatalf("write %d succeeded with the authoritative side down", i)
		}
	}
	b.facade.Wait()
	if got := count(t, b.pair.New.Pool, "users u", `NOT EXISTS (SELECT 1 FROM pgshift.repair_log l
		WHERE l.pull AND l.table_name = 'users' AND l.key = ARRAY[u.id::text])`); got != 0 {
		t.Fatalf("other side has %d users written while the authoritative side was down, with no pull record to undo them", got)
	}
	if err := oldSrv.Launched.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := count(t, b.pair.Old.Pool, "users", "true") + count(t, b.pair.Old.Pool, "pgshift.repair_log", "true"); got != 0 {
		t.Fatalf("authoritative side holds %d rows of failed writes", got)
	}
	waitDrained(t, b.facade, 30*time.Second)
	if got := count(t, b.pair.New.Pool, "users", "true"); got != 0 {
		t.Fatalf("other side holds %d users of failed writes after repair", got)
	}
}

// TestConcurrentUpdatesConverge has 32 goroutines update the same 10 rows
// while the other side rejects a share of the writes: after the repair log
// drains, both sides are equal. Directly and through PgBouncer.
func TestConcurrentUpdatesConverge(t *testing.T) {
	t.Parallel()
	for _, pooling := range pgtest.Poolings() {
		t.Run(pooling.String(), func(t *testing.T) {
			t.Parallel()
			testConcurrentUpdatesConverge(t, pooling)
		})
	}
}

func testConcurrentUpdatesConverge(t *testing.T, pooling pgtest.Pooled) {
	// 32 writers on 10 rows queue on each row's lock on new: a bound of a
	// few seconds keeps a loaded 2-core machine's queue inside it (a write
	// that waits longer fails with ErrRowBusy, which is not what this test
	// is about: the other side's failures).
	b := setupOn(t, pgtest.NewPair(t, pgtest.Domain).Via(t, pooling), flags.StageDualWrite,
		func(c *dualwrite.Config) { c.OtherTimeout = 5 * time.Second })
	ctx := userCtx("shared")
	var ids []uuid.UUID
	for i := 0; i < 10; i++ {
		u, err := b.store.Users.Create(ctx, repo.NewUser{Email: fmt.Sprintf("%d@example.com", i), Name: "start"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	b.facade.Wait()
	// The other side fails about a quarter of the updates.
	if _, err := b.pair.New.Pool.Exec(context.Background(), `
		CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF random() < 0.25 THEN RAISE EXCEPTION 'injected failure'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER flaky BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION flaky();`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failures atomic.Int64
	stop := time.Now().Add(3 * time.Second)
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				id := ids[(g+i)%len(ids)]
				if _, err := b.store.Users.Update(ctx, id, repo.UserUpdate{Name: fmt.Sprintf("g%d-%d", g, i), Country: "FR", Plan: "pro"}); err != nil {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d updates failed for the caller; the other side's failures must not reach it", n)
	}
	b.facade.Wait()
	if st := b.facade.Stats(); st.OtherMissed == 0 {
		t.Fatalf("the other side never failed (stats %+v): the test injected nothing", st)
	}
	if _, err := b.pair.New.Pool.Exec(context.Background(), "DROP TRIGGER flaky ON users"); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, b.facade, 60*time.Second)
	requireEqualSides(t, b.pair.Old.Pool, b.pair.New.Pool)
}

// TestShadowMismatchCountedOncePerRead changes a row on one side only: each
// shadow read of it counts exactly one mismatch; reads of an unchanged row
// count none.
func TestShadowMismatchCountedOncePerRead(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageShadow, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t, stage)
			ctx := userCtx("reader")
			same, err := b.store.Users.Create(ctx, repo.NewUser{Email: "same@example.com", Name: "same"})
			if err != nil {
				t.Fatal(err)
			}
			changed, err := b.store.Users.Create(ctx, repo.NewUser{Email: "changed@example.com", Name: "before"})
			if err != nil {
				t.Fatal(err)
			}
			b.facade.Wait()
			for i := 0; i < 5; i++ {
				if _, err := b.store.Users.Get(ctx, same.ID); err != nil {
					t.Fatal(err)
				}
			}
			b.facade.Wait()
			if st := b.facade.Stats(); st.ShadowMismatches != 0 || st.ShadowReads != 5 {
				t.Fatalf("after 5 reads of an unchanged row: %+v, want 5 shadow reads and 0 mismatches", st)
			}
			other := stage.Plan().Authoritative.Other()
			if _, err := b.pool(other).Exec(context.Background(), "UPDATE users SET name = 'after' WHERE id = $1", changed.ID); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				u, err := b.store.Users.Get(ctx, changed.ID)
				if err != nil || u.Name != "before" {
					t.Fatalf("read answered %+v, %v; want the authoritative row", u, err)
				}
				b.facade.Wait()
				if got := b.facade.Stats().ShadowMismatches; got != int64(i) {
					t.Fatalf("after %d reads of a changed row: %d mismatches, want %d", i, got, i)
				}
			}
			// A row missing on the other side is a mismatch too.
			if _, err := b.pool(other).Exec(context.Background(), "DELETE FROM users WHERE id = $1", same.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := b.store.Users.Get(ctx, same.ID); err != nil {
				t.Fatal(err)
			}
			b.facade.Wait()
			if got := b.facade.Stats().ShadowMismatches; got != 4 {
				t.Fatalf("row missing on the other side: %d mismatches, want 4", got)
			}
		})
	}
}

// TestGlobalOpsFollowGlobalStage checks that an operation marked Global is
// decided by the global stage, not by the user's.
func TestGlobalOpsFollowGlobalStage(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageOff, func(c *dualwrite.Config) { c.GlobalStages = flags.Static(flags.StageComplete) })
	ctx, outcome := dualwrite.WithOutcome(userCtx("u"))
	op := dualwrite.Op{Name: "settings.put", Global: true}
	if err := dualwrite.Exec(ctx, b.facade, op, func(ctx context.Context, tx *dualwrite.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO users (id, email, name) VALUES (gen_random_uuid(), 'g@example.com', 'g')")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if outcome.Stage != flags.StageComplete || outcome.Served != flags.SideNew {
		t.Fatalf("global op outcome = %+v, want complete served by new", outcome)
	}
	if count(t, b.pair.New.Pool, "users", "true") != 1 || count(t, b.pair.Old.Pool, "users", "true") != 0 {
		t.Fatal("global op in stage complete did not write new only")
	}
}

// TestShadowRecheckDropsTransientDifferences makes the sides differ only
// until after the first comparison, as a write in flight would: the
// re-reads find them equal, so no mismatch is counted. The difference
// outlives the first re-read (at 50 ms, the others follow 100, 200 and
// 400 ms later), as a write on a loaded machine does.
func TestShadowRecheckDropsTransientDifferences(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageShadow, func(c *dualwrite.Config) { c.ShadowRecheck = 50 * time.Millisecond })
	ctx := userCtx("r")
	u, err := b.store.Users.Create(ctx, repo.NewUser{Email: "r@example.com", Name: "same"})
	if err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	pgtest.Exec(t, b.pair.New.Pool, "UPDATE users SET name = 'in flight' WHERE id = $1", u.ID)
	compared := make(chan struct{})
	var once sync.Once
	equal := func(a, o string) bool {
		once.Do(func() { close(compared) })
		return a == o
	}
	read := func(ctx context.Context, q pgshift.Querier) (string, error) {
		var name string
		err := q.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", u.ID).Scan(&name)
		return name, err
	}
	if _, err := dualwrite.ReadCompare(ctx, b.facade, dualwrite.Op{Name: "users.name"}, read, equal); err != nil {
		t.Fatal(err)
	}
	<-compared
	time.Sleep(120 * time.Millisecond)
	pgtest.Exec(t, b.pair.New.Pool, "UPDATE users SET name = 'same' WHERE id = $1", u.ID)
	b.facade.Wait()
	if st := b.facade.Stats(); st.ShadowMismatches != 0 || st.ShadowTransient != 1 {
		t.Fatalf("stats %+v: want 0 mismatches and 1 transient difference", st)
	}
}

// TestAuthorityFlipUnderLoadConverges flips the stage between shadow (old
// authoritative) and live (new authoritative) while goroutines update the
// same rows: writes of both stages are in flight at every flip, and after
// the repair log drains both sides are equal. Directly and through PgBouncer.
func TestAuthorityFlipUnderLoadConverges(t *testing.T) {
	t.Parallel()
	for _, pooling := range pgtest.Poolings() {
		t.Run(pooling.String(), func(t *testing.T) {
			t.Parallel()
			testAuthorityFlipUnderLoadConverges(t, pooling)
		})
	}
}

func testAuthorityFlipUnderLoadConverges(t *testing.T, pooling pgtest.Pooled) {
	b := setupOn(t, pgtest.NewPair(t, pgtest.Domain).Via(t, pooling), flags.StageShadow,
		func(c *dualwrite.Config) { c.OtherTimeout = 300 * time.Millisecond })
	ctx := userCtx("flip")
	var ids []uuid.UUID
	for i := 0; i < 5; i++ {
		u, err := b.store.Users.Create(ctx, repo.NewUser{Email: fmt.Sprintf("f%d@example.com", i), Name: "start"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	stop := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	var failures atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				if _, err := b.store.Users.Update(ctx, ids[(g+i)%len(ids)], repo.UserUpdate{Name: fmt.Sprintf("g%d-%d", g, i), Plan: "pro"}); err != nil {
					failures.Add(1)
				}
			}
		}()
	}
	for time.Now().Before(stop) {
		b.stage.Set(flags.StageLive)
		time.Sleep(20 * time.Millisecond)
		b.stage.Set(flags.StageShadow)
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d updates failed for the caller across authority flips", n)
	}
	waitDrained(t, b.facade, 60*time.Second)
	requireEqualSides(t, b.pair.Old.Pool, b.pair.New.Pool)
}

// Calls on a closed facade return ErrClosed and touch neither database.
func TestCallsAfterCloseReturnErrClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageDualWrite)
	ctx := userCtx("closed")
	b.facade.Close()
	if _, err := b.store.Users.Create(ctx, repo.NewUser{Email: "c@example.com", Name: "c"}); !errors.Is(err, dualwrite.ErrClosed) {
		t.Errorf("write after Close: err %v, want ErrClosed", err)
	}
	if _, err := b.store.Users.Get(ctx, uuid.New()); !errors.Is(err, dualwrite.ErrClosed) {
		t.Errorf("read after Close: err %v, want ErrClosed", err)
	}
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		if n := count(t, b.pool(side), "users", "true"); n != 0 {
			t.Errorf("%v has %d users after calls on a closed facade, want 0", side, n)
		}
	}
	b.facade.Close() // a second Close does nothing
}
