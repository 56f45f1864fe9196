package dualwrite_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/status"
	"github.com/pgshift/pgshift/repo"
)

// The fault suite of issue 27: the other side refuses connections, hangs
// (a blackhole: connections accepted, nothing answered) or is slow, and the
// facade must stay bounded. The tests assert counts (connection attempts,
// writes that waited on the bad side, shadow reads made or dropped), never
// durations; every acknowledged write is on both sides at the end.

// faultBundle is a facade whose other side (for stage) is reached through a
// proxy the test controls; direct holds pools on both databases that bypass
// it, for the test's own checks.
type faultBundle struct {
	*bundle
	direct *pgtest.Pair
	proxy  *pgtest.Proxy
	other  flags.Side
}

func faultSetup(t testing.TB, stage flags.Stage, otherConns int32, cfg ...func(*dualwrite.Config)) *faultBundle {
	t.Helper()
	direct := pgtest.NewPair(t, pgtest.Domain)
	other := stage.Plan().Authoritative.Other()
	via := &pgtest.Pair{Old: direct.Old, New: direct.New}
	db := *direct.Old
	if other == flags.SideNew {
		db = *direct.New
	}
	var proxy *pgtest.Proxy
	db.Pool, proxy = proxiedPoolOf(t, &db, otherConns)
	if other == flags.SideNew {
		via.New = &db
	} else {
		via.Old = &db
	}
	return &faultBundle{bundle: setupOn(t, via, stage, cfg...), direct: direct, proxy: proxy, other: other}
}

func (fb *faultBundle) skipped() int64 {
	s := fb.facade.Stats()
	if fb.other == flags.SideNew {
		return s.NewSkipped
	}
	return s.OldSkipped
}

func (fb *faultBundle) breakerState() dualwrite.BreakerState {
	s := fb.facade.Stats()
	if fb.other == flags.SideNew {
		return s.NewBreaker
	}
	return s.OldBreaker
}

// writeMix runs n writes of one user through the facade, each of the three
// write paths in turn (an ordered update, a NewRows insert of a user and of
// a post), and fails the test on any error: the other side's trouble is
// never the caller's.
func writeMix(t *testing.T, fb *faultBundle, user uuid.UUID, n int) {
	t.Helper()
	ctx := userCtx(user.String())
	for i := range n {
		var err error
		switch i % 3 {
		case 0:
			_, err = fb.store.Users.Update(ctx, user, repo.UserUpdate{Name: fmt.Sprintf("n%d", i)})
		case 1:
			_, err = fb.store.Users.Create(ctx, repo.NewUser{Email: fmt.Sprintf("%s-%d@example.com", user, i), Name: "w"})
		default:
			_, err = fb.store.Posts.Create(ctx, repo.NewPost{UserID: user, Title: "p", Body: "b"})
		}
		if err != nil {
			t.Fatalf("write %d failed while the other side was in trouble: %v", i, err)
		}
	}
}

// TestBreakerBoundsAttemptsOnADownSide stops the other side (connections
// refused) and writes 60 times: the writes succeed, the side sees at most
// the connection attempts that open its breaker (not one per write), every
// later write skips it, and after the side is back the repair log brings
// it every acknowledged write.
func TestBreakerBoundsAttemptsOnADownSide(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			const writes = 60
			fb := faultSetup(t, stage, 4, func(c *dualwrite.Config) {
				c.BreakerCooldown = time.Hour // no probe during the test
				c.RepairDisabled = true       // its passes, bounded per second, would add attempts
			})
			users, _ := seedDomain(t, fb.direct)
			// The user's first call, with both sides up: a first move to
			// new waits for old (TestFirstFlipWithOldSilentRefusesTheKey).
			// A write, not a read: a shadow read's comparison would reach
			// the other side after the count below began.
			catchUpFirst(t, fb.direct.New.Pool, users[0].String(), stage.Plan().Authoritative, func() error {
				_, err := fb.store.Users.Update(userCtx(users[0].String()), users[0], repo.UserUpdate{Name: "first"})
				return err
			})
			fb.facade.Wait()
			fb.proxy.Down()
			before := fb.proxy.Attempts()
			writeMix(t, fb, users[0], writes)
			fb.facade.Wait()
			// pgx may try a refused connection twice (with and without TLS);
			// a write that timed out on the loaded machine instead of being
			// refused has the side pinged once on a connection of its own.
			if got, most := fb.proxy.Attempts()-before, 2*dualwrite.BreakerFailuresDefault+2; got > most {
				t.Fatalf("%d connection attempts to the down side for %d writes, want at most %d (the breaker's threshold and one confirming ping)", got, writes, most)
			}
			if got := fb.breakerState(); got != dualwrite.BreakerOpen {
				t.Fatalf("breaker of the down side is %s, want open", got)
			}
			if got, least := fb.skipped(), int64(writes-dualwrite.BreakerFailuresDefault); got < least {
				t.Fatalf("%d writes skipped the down side, want at least %d", got, least)
			}
			fb.proxy.Up()
			if _, err := fb.facade.Repairer().Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitDrained(t, fb.facade, 60*time.Second)
			requireEqualSides(t, fb.direct.Old.Pool, fb.direct.New.Pool)
		})
	}
}

// TestBreakerProbeLetsTheSideBackIn opens the breaker with the side down,
// brings the side back, and checks that a probe closes the breaker and
// writes reach the side directly again (none skipped, none missed).
func TestBreakerProbeLetsTheSideBackIn(t *testing.T) {
	t.Parallel()
	fb := faultSetup(t, flags.StageDualWrite, 4, func(c *dualwrite.Config) {
		c.BreakerCooldown = 50 * time.Millisecond
	})
	users, _ := seedDomain(t, fb.direct)
	fb.proxy.Down()
	ctx := userCtx(users[0].String())
	for i := 0; fb.breakerState() == dualwrite.BreakerClosed; i++ {
		if i == 100 {
			t.Fatal("breaker still closed after 100 writes with the side down")
		}
		if _, err := fb.store.Users.Update(ctx, users[0], repo.UserUpdate{Name: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	fb.proxy.Up()
	deadline := time.Now().Add(60 * time.Second)
	for fb.breakerState() != dualwrite.BreakerClosed {
		if time.Now().After(deadline) {
			t.Fatalf("breaker still %s a minute after the side came back", fb.breakerState())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fb.facade.Wait()
	skipped, missed := fb.skipped(), fb.facade.Stats().OtherMissed
	writeMix(t, fb, users[1], 9)
	fb.facade.Wait()
	if got := fb.skipped(); got != skipped {
		t.Fatalf("%d writes skipped the side after its breaker closed", got-skipped)
	}
	if got := fb.facade.Stats().OtherMissed; got != missed {
		t.Fatalf("the side missed %d writes after its breaker closed", got-missed)
	}
	waitDrained(t, fb.facade, 60*time.Second)
	requireEqualSides(t, fb.direct.Old.Pool, fb.direct.New.Pool)
}

// TestHungSideWaitedOnOnce blackholes the other side (it accepts and never
// answers) and writes 30 times one after the other: one write times out on
// it, a ping confirms the hang while at most one more write waits, the
// breaker opens and the others skip it; so the authoritative side's
// transaction, locks and connection are held on its account at most twice. The repair worker's passes against the hung
// side end within their bound. Once the side answers again, the repair log
// brings it every write (drained with the default bound).
func TestHungSideWaitedOnOnce(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			const writes = 30
			fb := faultSetup(t, stage, 4, func(c *dualwrite.Config) {
				c.OtherTimeout = 300 * time.Millisecond
				c.BreakerCooldown = time.Hour
				c.Repair.PassTimeout = 500 * time.Millisecond
			})
			users, _ := seedDomain(t, fb.direct)
			// The user's first call catches it up, which in live marks
			// the user on old and would meet the hang first: that call
			// is made while old answers, so the writes below meet it.
			writeMix(t, fb, users[0], 1)
			fb.facade.Wait()
			fb.proxy.Blackhole()
			writeMix(t, fb, users[0], writes)
			fb.facade.Wait()
			s := fb.facade.Stats()
			if waited := s.OtherMissed - fb.skipped(); waited < 1 || waited > 2 {
				t.Fatalf("%d writes waited on the hung side (missed %d, skipped %d), want 1 or 2", waited, s.OtherMissed, fb.skipped())
			}
			fb.proxy.Up()
			// The facade's worker, with its short PassTimeout, backs off
			// after its failed passes (and on a loaded machine its passes
			// can outlast 500 ms): the log is drained by a Repairer with
			// the default bound, as an operator's `pgshift repair` would,
			// once the facade (and its worker) is closed.
			fb.facade.Wait()
			fb.facade.Close()
			drainDirect(t, fb.direct)
			requireEqualSides(t, fb.direct.Old.Pool, fb.direct.New.Pool)
		})
	}
}

// drainDirect drains both repair logs of pair now, on its direct pools with
// the default RepairConfig, and fails unless they end empty.
func drainDirect(t *testing.T, pair *pgtest.Pair) {
	t.Helper()
	r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: pair.Old.Pool, New: pair.New.Pool})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := r.RetryPostponed(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if b, err := r.Backlog(ctx); err != nil || b.Entries() != 0 {
		t.Fatalf("repair log not drained: backlog %+v, err %v", b, err)
	}
}

// TestShadowReadsBoundedAndDropped slows the other side down in shadow and
// reads 48 times at once: at most ShadowConcurrency shadow reads are in
// flight (the other side sees no more connections than that, and a few for
// the facade's own work), and every read is either compared or dropped,
// never queued.
func TestShadowReadsBoundedAndDropped(t *testing.T) {
	t.Parallel()
	const shadows, readers, perReader = 2, 8, 6
	fb := faultSetup(t, flags.StageShadow, 16, func(c *dualwrite.Config) {
		c.ShadowConcurrency = shadows
		c.RepairDisabled = true
		// Slow, not hung: no read may time out, or the breaker's ping and
		// probes would add connections of their own on a loaded machine.
		c.OtherTimeout = 30 * time.Second
	})
	users, _ := seedDomain(t, fb.direct)
	before := fb.proxy.Connections()
	fb.proxy.Delay(50 * time.Millisecond)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for i := range perReader {
				if _, err := fb.store.Users.Get(userCtx("r"), users[(r+i)%len(users)]); err != nil {
					t.Errorf("read: %v", err)
				}
			}
		})
	}
	wg.Wait()
	fb.facade.Wait()
	s := fb.facade.Stats()
	if s.ShadowReads+s.ShadowDropped != readers*perReader {
		t.Fatalf("%d shadow reads made and %d dropped, want %d in all", s.ShadowReads, s.ShadowDropped, readers*perReader)
	}
	if s.ShadowDropped == 0 {
		t.Fatalf("no shadow read dropped with %d readers and %d slots on a slow side", readers, shadows)
	}
	// The facade's shadow-count flush may add one connection of its own.
	if got := fb.proxy.Connections() - before; got > shadows+1 {
		t.Fatalf("the slow side got %d new connections, want at most %d (ShadowConcurrency and one)", got, shadows+1)
	}
}

// TestShadowReadsSampled compares a share of the reads only.
func TestShadowReadsSampled(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageShadow, func(c *dualwrite.Config) {
		c.ShadowSample = 0.25
		c.ShadowConcurrency = 1000
	})
	users, _ := seedDomain(t, b.pair)
	const reads = 400
	for i := range reads {
		if _, err := b.store.Users.Get(userCtx("r"), users[i%len(users)]); err != nil {
			t.Fatal(err)
		}
	}
	b.facade.Wait()
	// 100 expected; the bounds are over 8 standard deviations away.
	if got := b.facade.Stats().ShadowReads; got < 30 || got > 200 {
		t.Fatalf("%d of %d reads compared with ShadowSample 0.25", got, reads)
	}
}

// TestRepairPassBoundedOnAHungSide drains a repair log while one side is
// blackholed: the pass fails within RepairConfig.PassTimeout, saying so,
// instead of waiting for the connection to reset.
func TestRepairPassBoundedOnAHungSide(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	oldPool, proxy := proxiedPoolOf(t, pair.Old, 2)
	r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: oldPool, New: pair.New.Pool,
		RepairConfig: dualwrite.RepairConfig{PassTimeout: 2 * time.Second}}) // a loaded machine's healthy pass fits
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Drain(context.Background()); err != nil {
		t.Fatalf("drain before the fault: %v", err)
	}
	proxy.Blackhole()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = r.Drain(ctx)
	if err == nil || !strings.Contains(err.Error(), "PassTimeout") {
		t.Fatalf("drain with old hung: err %v, want one naming RepairConfig.PassTimeout", err)
	}
}

// TestErrorsNameSideAndOperation cuts the authoritative side: the caller's
// errors name the operation and the side, not only what broke.
func TestErrorsNameSideAndOperation(t *testing.T) {
	t.Parallel()
	fb := faultSetup(t, flags.StageComplete, 2) // proxies old
	users, _ := seedDomain(t, fb.direct)
	fb.stage.Set(flags.StageDualWrite) // old is authoritative
	fb.proxy.Down()
	ctx := userCtx("u")
	_, werr := fb.store.Users.Update(ctx, users[0], repo.UserUpdate{Name: "x"})
	_, rerr := fb.store.Users.Get(ctx, users[0])
	for _, c := range []struct {
		err  error
		want string
	}{{werr, "write users.update on old"}, {rerr, "read users.get on old"}} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("error with old down: %v, want one saying %q", c.err, c.want)
		}
	}
}

// TestShadowDifferencePendingRepairNotAMismatch reads, in shadow, a row
// that differs on new while its routing key has an entry in the repair log
// (a backlog still draining after an outage): it counts as pending repair,
// not as a mismatch; the same difference for a key with no entry is one.
func TestShadowDifferencePendingRepairNotAMismatch(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageShadow, func(c *dualwrite.Config) {
		c.RepairDisabled = true
		c.ShadowRecheck = -1
	})
	users, _ := seedDomain(t, b.pair)
	// Each key's first call catches the key up (repairs its entries before
	// its authority serves it): serve both keys once, on a row both sides
	// agree on, so that the entry below stays pending.
	for _, key := range []string{"pending", "clean"} {
		if _, err := b.store.Users.Get(userCtx(key), users[2]); err != nil {
			t.Fatal(err)
		}
	}
	b.facade.Wait()
	for _, id := range users[:2] {
		pgtest.Exec(t, b.pair.New.Pool, "UPDATE users SET name = 'differs' WHERE id = $1", id)
	}
	pgtest.Exec(t, b.pair.Old.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, routing_key)
		VALUES ('public', 'users', ARRAY[$1::text], 'users.update', 'pending')`, users[0].String())
	if _, err := b.store.Users.Get(userCtx("pending"), users[0]); err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	if s := b.facade.Stats(); s.ShadowPending != 1 || s.ShadowMismatches != 0 {
		t.Fatalf("difference on a key with a pending entry: %d pending, %d mismatches; want 1 and 0", s.ShadowPending, s.ShadowMismatches)
	}
	if _, err := b.store.Users.Get(userCtx("clean"), users[1]); err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	if s := b.facade.Stats(); s.ShadowPending != 1 || s.ShadowMismatches != 1 {
		t.Fatalf("difference on a key without entries: %d pending, %d mismatches; want 1 and 1", s.ShadowPending, s.ShadowMismatches)
	}
}

// BenchmarkWriteOtherHung measures an ordered write (Users.Update) with the
// default Config (OtherTimeout 2 s) while the other side is healthy, and
// after it hung (a blackhole): the writes in flight when it hung wait
// OtherTimeout once (first-ms), the breaker opens, and the writes after it
// skip the side. Latencies in milliseconds; run with -benchtime 200x.
func BenchmarkWriteOtherHung(b *testing.B) {
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		b.Run(stage.String(), func(b *testing.B) {
			fb := faultSetup(b, stage, 16, func(c *dualwrite.Config) {
				c.OtherTimeout = 0 // the default
				c.BreakerCooldown = time.Hour
			})
			users, _ := seedDomain(b, fb.direct)
			ctx := userCtx(users[0].String())
			write := func(i int) time.Duration {
				start := time.Now()
				if _, err := fb.store.Users.Update(ctx, users[0], repo.UserUpdate{Name: fmt.Sprint(i)}); err != nil {
					b.Fatal(err)
				}
				return time.Since(start)
			}
			var healthy, hung []time.Duration
			i := 0
			for b.Loop() {
				healthy = append(healthy, write(i))
				i++
			}
			fb.facade.Wait()
			fb.proxy.Blackhole()
			first := write(i)
			for range len(healthy) {
				i++
				hung = append(hung, write(i))
			}
			fb.facade.Wait()
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(percentile(healthy, .5)), "healthy-p50-ms")
			b.ReportMetric(ms(percentile(healthy, .99)), "healthy-p99-ms")
			b.ReportMetric(ms(first), "first-ms")
			b.ReportMetric(ms(percentile(hung, .5)), "open-p50-ms")
			b.ReportMetric(ms(percentile(hung, .99)), "open-p99-ms")
			b.ReportMetric(float64(fb.facade.Stats().OtherMissed-fb.skipped()), "waited-writes")
			fb.proxy.Up()
		})
	}
}

// TestStartWarnsOnNonDurableSide starts a facade whose new side commits
// with synchronous_commit off: it warns, naming the side and the setting.
func TestStartWarnsOnNonDurableSide(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	cfg, err := pgxpool.ParseConfig(pair.New.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	lossy, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lossy.Close)
	var logs strings.Builder
	var mu sync.Mutex
	f, err := dualwrite.New(context.Background(), dualwrite.Config{Old: pair.Old.Pool, New: lossy,
		Stages: flags.Static(flags.StageDualWrite), RepairDisabled: true,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "side=new fsync=") || !strings.Contains(logs.String(), "synchronous_commit=off") {
		t.Fatalf("no warning about new's synchronous_commit in the start-up logs:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestRepairLogVacuumedEagerly checks that Install sets the repair log's
// autovacuum to run every few thousand entries, not after a fifth of the
// table changed: a log an outage grew must be analyzed and shrink again.
func TestRepairLogVacuumedEagerly(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	var opts []string
	if err := pair.Old.Pool.QueryRow(context.Background(),
		"SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = 'pgshift.repair_log'::regclass").Scan(&opts); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(opts, ",")
	for _, want := range []string{"autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_insert_scale_factor=0", "autovacuum_analyze_scale_factor=0"} {
		if !strings.Contains(got, want) {
			t.Errorf("repair_log's options %q lack %s", got, want)
		}
	}
}

// TestHungAuthoritativeSideBoundedByCallTimeout blackholes old, the
// authoritative side in dualwrite, and calls the facade with a context that
// has no deadline: a write and a read each fail once Config.CallTimeout has
// passed, saying so, instead of waiting for ever; with old back, writes
// succeed again.
func TestHungAuthoritativeSideBoundedByCallTimeout(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	oldPool, proxy := proxiedPoolOf(t, pair.Old, 4)
	b := setupOn(t, &pgtest.Pair{Old: &pgtest.DB{Server: pair.Old.Server, Name: pair.Old.Name, URL: pair.Old.URL, Pool: oldPool}, New: pair.New},
		flags.StageDualWrite, func(c *dualwrite.Config) { c.CallTimeout = 2 * time.Second })
	users, _ := seedDomain(t, pair)
	ctx := userCtx(users[0].String())
	proxy.Blackhole()
	calls := map[string]func() error{
		"write": func() error {
			_, err := b.store.Users.Update(ctx, users[0], repo.UserUpdate{Name: "hung", Country: "FR", Plan: "pro"})
			return err
		},
		"read": func() error {
			_, err := b.store.Users.Get(ctx, users[0])
			return err
		},
	}
	for name, call := range calls {
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Config.CallTimeout") {
				t.Fatalf("%s with the authoritative side hung: %v, want a deadline naming Config.CallTimeout", name, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("%s with the authoritative side hung still waits after a minute (CallTimeout 2s)", name)
		}
	}
	proxy.Up()
	// The pool's connections to old were cut while it hung; on a loaded
	// machine the first call after may spend its bound reconnecting. What
	// this checks is that old is usable again, not how fast.
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, err = b.store.Users.Update(ctx, users[0], repo.UserUpdate{Name: "back", Country: "FR", Plan: "pro"}); err == nil {
			return
		}
	}
	t.Fatalf("write with old back still fails after 30 s: %v", err)
}

// TestStatusShowsEachFacadesBreakers opens new's breaker in one facade and
// reads `pgshift status`'s report (internal/status) with new down: the
// facade, reporting itself on old, shows new's breaker open and the writes
// that skipped it; once it closes, its report is gone.
func TestStatusShowsEachFacadesBreakers(t *testing.T) {
	t.Parallel()
	fb := faultSetup(t, flags.StageDualWrite, 4, func(c *dualwrite.Config) {
		c.BreakerCooldown = time.Hour // stays open for the test
		*c = dualwrite.WithHeartbeatEvery(*c, 50*time.Millisecond)
	})
	users, _ := seedDomain(t, fb.direct)
	fb.proxy.Down()
	ctx := userCtx(users[0].String())
	for i := 0; fb.breakerState() != dualwrite.BreakerOpen; i++ {
		if i == 100 {
			t.Fatal("breaker still closed after 100 writes with new down")
		}
		if _, err := fb.store.Users.Update(ctx, users[0], repo.UserUpdate{Name: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// One write with the breaker open skips new: the count status shows is
	// then at least 1.
	if _, err := fb.store.Users.Update(ctx, users[0], repo.UserUpdate{Name: "skips"}); err != nil {
		t.Fatal(err)
	}
	skipped := fb.skipped()
	if skipped == 0 {
		t.Fatal("a write with new's breaker open did not count as skipping it")
	}
	mine := func() *status.Facade {
		t.Helper()
		rep, err := status.Collect(context.Background(), fb.direct.Old.Pool, nil, "public", []string{"users"}, status.Options{NewErr: errors.New("down")})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range rep.Facades {
			if f.BreakerNew != string(dualwrite.BreakerClosed) && f.SkippedNew >= skipped {
				return &f
			}
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	var f *status.Facade
	for f = mine(); f == nil; f = mine() {
		if time.Now().After(deadline) {
			t.Fatal("status shows no facade with new's breaker open 30 s after it opened")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if f.BreakerNew != string(dualwrite.BreakerOpen) || f.BreakerOld != string(dualwrite.BreakerClosed) || f.PID != int32(os.Getpid()) {
		t.Fatalf("status shows %+v, want new's breaker open, old's closed, this process", *f)
	}
	var out strings.Builder
	rep := &status.Report{Schema: "public", Facades: []status.Facade{*f}}
	if err := rep.Write(&out); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("open (%d calls skipped it)", f.SkippedNew); !strings.Contains(out.String(), want) {
		t.Fatalf("status's text does not say %q:\n%s", want, out.String())
	}
	fb.facade.Close()
	if f := mine(); f != nil {
		t.Fatalf("status still shows %+v after the facade closed", *f)
	}
}
