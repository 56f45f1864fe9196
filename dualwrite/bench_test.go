package dualwrite_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
	"github.com/pgshift/pgshift/repo/db"
)

// The benchmarks compare the facade with pgx on the same pools of the same
// two databases. Every benchmark interleaves its variants: a round runs a
// block of each variant in turn, and each variant's time is summed over the
// rounds (reported as <variant>-ns/op, with <variant>-allocs/op), so that
// the machine's drift over seconds (large on this VM: the same pgx read
// ranged 35 to 104 us between runs minutes apart) falls on every variant
// alike. BENCHMARKS.md runs the binary several times and takes medians:
//
//	go test -c -o /tmp/dw.test ./dualwrite && cd dualwrite && \
//	  for i in $(seq 6); do /tmp/dw.test -test.run '^$' -test.bench . -test.benchtime 100x; done > /tmp/dw.txt
//	benchstat /tmp/dw.txt
//
// The facade runs as an application runs it: its repair worker on (at its
// default interval), decisions from a Source that costs what a cached flags
// decision costs (a few tens of nanoseconds). Work the facade leaves off the
// caller's path (deleting confirmed log records, shadow comparisons) is
// finished, untimed, after each of its blocks, so it is not charged to the
// variant after it; BenchmarkConcurrentUpdates keeps it in.

// variant is one way of doing a benchmark's operation.
type variant struct {
	name string
	op   func() error
	// settle, when set, runs untimed after each block.
	settle func()
}

// interleaved runs rounds of blocks of every variant, in an order that
// rotates from round to round, and reports each variant's time per
// operation, and its allocations per operation measured once beforehand. An op that makes writes writes counts as that many
// operations.
func interleaved(b *testing.B, block, writes int, variants ...variant) {
	b.Helper()
	allocs := make([]float64, len(variants))
	for i, v := range variants {
		allocs[i] = testing.AllocsPerRun(20, func() {
			if err := v.op(); err != nil {
				b.Fatal(err)
			}
		})
	}
	elapsed := make([]time.Duration, len(variants))
	b.ResetTimer()
	for round := range b.N {
		// Each round starts one variant further on, so that no variant
		// always follows the same one (and its after-effects on a server:
		// a side left idle, or busy with the last block's settled work).
		for k := range variants {
			i := (round + k) % len(variants)
			v := variants[i]
			start := time.Now()
			for range block {
				if err := v.op(); err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
			}
			elapsed[i] += time.Since(start)
			if v.settle != nil {
				b.StopTimer()
				v.settle()
				b.StartTimer()
			}
		}
	}
	for i, v := range variants {
		b.ReportMetric(float64(elapsed[i].Nanoseconds())/float64(b.N*block*writes), v.name+"-ns/op")
		b.ReportMetric(allocs[i]/float64(writes), v.name+"-allocs/op")
	}
}

// benchBundle is one pair of databases with a facade whose stage a
// sub-benchmark sets, the repositories and a few users on both sides.
type benchBundle struct {
	*bundle
	users []uuid.UUID
	// routingKey is the user the facade's variant running now writes as:
	// one per stage, so that no variant finds its user's authority moved by
	// the one before it (each move is a catch-up, which the benchmarks do
	// not measure: BENCHMARKS.md's "authority flip" section does).
	routingKey string
}

// ctx is the context of the facade variant running now (see routingKey).
func (bb *benchBundle) ctx() context.Context {
	return flags.WithUser(context.Background(), bb.routingKey, nil)
}

func benchSetup(b *testing.B) *benchBundle {
	b.Helper()
	pair := benchPair(b)
	bd := setupOn(b, pair, flags.StageOff, func(c *dualwrite.Config) {
		c.Logger = nil // slog.Default(), at Info: what an application logs
		c.Repair = dualwrite.RepairConfig{}
	})
	ctx := context.Background()
	q := db.New()
	bb := &benchBundle{bundle: bd}
	for i := range 64 {
		id := uuid.Must(uuid.NewV7())
		for _, p := range []*pgxpool.Pool{pair.Old.Pool, pair.New.Pool} {
			if _, err := q.CreateUser(ctx, p, db.CreateUserParams{ID: id, Email: fmt.Sprintf("seed%d@example.com", i), Name: "seed", Plan: "free", CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}); err != nil {
				b.Fatal(err)
			}
		}
		bb.users = append(bb.users, id)
	}
	// As `pgshift sync-sequences` does before any cohort is live: ids new
	// assigns must not meet old's.
	pgtest.Exec(b, pair.New.Pool, "SELECT setval('events_id_seq', 1000000000)")
	return bb
}

// benchPair is a fresh pair of databases. In the latency regime
// (PGSHIFT_BENCH_LATENCY, a delay such as 500us) each side's pool goes
// through a proxy of its own that passes every chunk of bytes on that long
// after it arrived, in each direction: a round trip to either side costs
// twice that more, as to a database elsewhere in the region, and round trips
// to the two sides at once overlap. Unset, both sides are on loopback (the
// server's work per write, not round trips, is what differs then).
func benchPair(b *testing.B) *pgtest.Pair {
	b.Helper()
	pair := pgtest.NewPair(b, pgtest.Domain)
	v := os.Getenv("PGSHIFT_BENCH_LATENCY")
	if v == "" {
		return pair
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("PGSHIFT_BENCH_LATENCY=%q: want a delay per direction such as 500us", v)
	}
	via := &pgtest.Pair{}
	for _, side := range []struct {
		to   **pgtest.DB
		from *pgtest.DB
	}{{&via.Old, pair.Old}, {&via.New, pair.New}} {
		db := *side.from
		var proxy *pgtest.Proxy
		db.Pool, proxy = pgtest.ProxiedPool(b, db.URL, db.Pool.Config().MaxConns)
		proxy.Delay(d)
		*side.to = &db
	}
	return via
}

var dualStages = []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive, flags.StageRampdown}

// facadeVariant is the facade in stage, running op; its off-path work is
// settled after each block.
func (bb *benchBundle) facadeVariant(stage flags.Stage, op func() error) variant {
	return variant{
		name:   "facade-" + stage.String(),
		op:     func() error { bb.stage.Set(stage); bb.routingKey = "bench-" + stage.String(); return op() },
		settle: bb.facade.Wait,
	}
}

// BenchmarkRead compares a primary-key read through the facade in stage off
// (and complete) with the same generated query on pgx directly, on the same
// pool.
func BenchmarkRead(b *testing.B) {
	bb := benchSetup(b)
	ctx := flags.WithUser(context.Background(), "bench", nil)
	id := bb.users[0]
	q := db.New()
	read := func() error { _, err := bb.store.Users.Get(bb.ctx(), id); return err }
	interleaved(b, 20, 1,
		variant{name: "pgx-old", op: func() error { _, err := q.GetUser(ctx, bb.pair.Old.Pool, id); return err }},
		bb.facadeVariant(flags.StageOff, read),
		variant{name: "pgx-new", op: func() error { _, err := q.GetUser(ctx, bb.pair.New.Pool, id); return err }},
		bb.facadeVariant(flags.StageComplete, read),
	)
}

// writeVariants are the variants of a write benchmark: pgx directly on one
// side (old, and new for complete), the naive migrator (the same statement on
// one side, then the other: autocommit, no guarantee), and the facade in
// every stage.
func (bb *benchBundle) writeVariants(direct func(pool *pgxpool.Pool) error, naive func() error, facade func() error) []variant {
	vs := []variant{
		{name: "pgx-old", op: func() error { return direct(bb.pair.Old.Pool) }},
		{name: "pgx-new", op: func() error { return direct(bb.pair.New.Pool) }},
		{name: "naive-both", op: naive},
	}
	for _, stage := range flags.AllStages() {
		vs = append(vs, bb.facadeVariant(stage, facade))
	}
	return vs
}

// BenchmarkInsert inserts one new user (a UUIDv7 key the application makes:
// Users.Create is a NewRows, OneStatement write).
func BenchmarkInsert(b *testing.B) {
	bb := benchSetup(b)
	ctx := flags.WithUser(context.Background(), "bench", nil)
	q := db.New()
	var n atomic.Int64
	params := func() db.CreateUserParams {
		i := n.Add(1)
		return db.CreateUserParams{ID: uuid.Must(uuid.NewV7()), Email: fmt.Sprintf("i%d@example.com", i), Name: "bench", Plan: "free",
			CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	}
	interleaved(b, 20, 1, bb.writeVariants(
		func(pool *pgxpool.Pool) error { _, err := q.CreateUser(ctx, pool, params()); return err },
		func() error {
			p := params()
			for _, pool := range []*pgxpool.Pool{bb.pair.Old.Pool, bb.pair.New.Pool} {
				if _, err := q.CreateUser(ctx, pool, p); err != nil {
					return err
				}
			}
			return nil
		},
		func() error {
			p := params()
			_, err := bb.store.Users.Create(bb.ctx(), repo.NewUser{Email: p.Email, Name: p.Name})
			return err
		},
	)...)
}

// BenchmarkUpdate updates one existing user (Users.Update, a OneStatement
// write of a row other writes may hold: the ordered path).
func BenchmarkUpdate(b *testing.B) {
	bb := benchSetup(b)
	ctx := flags.WithUser(context.Background(), "bench", nil)
	q := db.New()
	var n atomic.Int64
	params := func() db.UpdateUserParams {
		i := n.Add(1)
		return db.UpdateUserParams{ID: bb.users[int(i)%len(bb.users)], Name: fmt.Sprintf("u%d", i), Plan: "pro",
			UpdatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	}
	interleaved(b, 20, 1, bb.writeVariants(
		func(pool *pgxpool.Pool) error { _, err := q.UpdateUser(ctx, pool, params()); return err },
		func() error {
			p := params()
			for _, pool := range []*pgxpool.Pool{bb.pair.Old.Pool, bb.pair.New.Pool} {
				if _, err := q.UpdateUser(ctx, pool, p); err != nil {
					return err
				}
			}
			return nil
		},
		func() error {
			p := params()
			_, err := bb.store.Users.Update(bb.ctx(), p.ID, repo.UserUpdate{Name: p.Name, Plan: p.Plan})
			return err
		},
	)...)
}

// threeStatements reads a user, updates it and records an event, in one
// transaction on q: the event's id is assigned by q unless id is given.
func threeStatements(ctx context.Context, q db.DBTX, user uuid.UUID, id int64, name string, at time.Time) (db.Event, error) {
	queries := db.New()
	u, err := queries.GetUser(ctx, q, user)
	if err != nil {
		return db.Event{}, err
	}
	if _, err := queries.UpdateUser(ctx, q, db.UpdateUserParams{ID: u.ID, Name: name, Plan: u.Plan, Country: u.Country, UpdatedAt: at}); err != nil {
		return db.Event{}, err
	}
	if id != 0 {
		return queries.CreateEventWithID(ctx, q, db.CreateEventWithIDParams{ID: id, UserID: u.ID, Kind: "rename", Payload: []byte(`{}`), CreatedAt: at})
	}
	return queries.CreateEvent(ctx, q, db.CreateEventParams{UserID: u.ID, Kind: "rename", Payload: []byte(`{}`), CreatedAt: at})
}

// BenchmarkThreeStatements runs a write function of three statements (read,
// update, insert an event whose id the authoritative side assigns): the
// naive migrator runs them in a pgx transaction on old, then on new with
// old's event id; the facade in the dual stages.
func BenchmarkThreeStatements(b *testing.B) {
	bb := benchSetup(b)
	ctx := flags.WithUser(context.Background(), "bench", nil)
	var n atomic.Int64
	next := func() (uuid.UUID, string, time.Time) {
		i := n.Add(1)
		return bb.users[int(i)%len(bb.users)], fmt.Sprintf("t%d", i), time.Now().UTC().Truncate(time.Microsecond)
	}
	vs := []variant{{name: "naive-both", op: func() error {
		user, name, at := next()
		var e db.Event
		for i, pool := range []*pgxpool.Pool{bb.pair.Old.Pool, bb.pair.New.Pool} {
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				id := int64(0)
				if i == 1 {
					id = e.ID
				}
				var err error
				e, err = threeStatements(ctx, tx, user, id, name, at)
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	}}}
	op := dualwrite.Op{Name: "users.rename_with_event"}
	for _, stage := range dualStages {
		vs = append(vs, bb.facadeVariant(stage, func() error {
			user, name, at := next()
			_, err := dualwrite.Write(bb.ctx(), bb.facade, op, func(ctx context.Context, tx *dualwrite.Tx, prev *db.Event) (db.Event, error) {
				tx.Touch("users", user)
				id := int64(0)
				if prev != nil {
					id = prev.ID
				}
				e, err := threeStatements(ctx, tx, user, id, name, at)
				if err == nil {
					tx.Touch("events", e.ID)
				}
				return e, err
			})
			return err
		}))
	}
	interleaved(b, 10, 1, vs...)
}

// BenchmarkConcurrentUpdates runs 16 writers at once, each updating rows of
// its own; a variant's time per operation is the wall time of its blocks
// divided by the writes all writers made in them: the inverse of
// throughput. The facade's off-path work stays in its blocks. Each
// variant also reports the 50th and 99th percentiles of its writes'
// latencies (<variant>-p50-us, <variant>-p99-us), the runs that measure
// allocations left out.
func BenchmarkConcurrentUpdates(b *testing.B) {
	bb := benchSetup(b)
	ctx := flags.WithUser(context.Background(), "bench", nil)
	q := db.New()
	const writers, perWriter = 16, 10
	var latencies []*latencyLog
	concurrently := func(write func(id uuid.UUID, name string) error) func() error {
		lat := &latencyLog{}
		latencies = append(latencies, lat)
		return func() error {
			var g errgroup.Group
			for w := range writers {
				g.Go(func() error {
					for i := range perWriter {
						// Writer w owns users w, w+16, w+32, ...: rows no other writer touches.
						id := bb.users[(w+writers*(i%4))%len(bb.users)]
						start := time.Now()
						if err := write(id, fmt.Sprintf("c%d-%d", w, i)); err != nil {
							return err
						}
						lat.add(time.Since(start))
					}
					return nil
				})
			}
			return g.Wait()
		}
	}
	vs := []variant{{name: "naive-both", op: concurrently(func(id uuid.UUID, name string) error {
		p := db.UpdateUserParams{ID: id, Name: name, Plan: "pro", UpdatedAt: time.Now().UTC().Truncate(time.Microsecond)}
		for _, pool := range []*pgxpool.Pool{bb.pair.Old.Pool, bb.pair.New.Pool} {
			if _, err := q.UpdateUser(ctx, pool, p); err != nil {
				return err
			}
		}
		return nil
	})}}
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		v := bb.facadeVariant(stage, concurrently(func(id uuid.UUID, name string) error {
			_, err := bb.store.Users.Update(bb.ctx(), id, repo.UserUpdate{Name: name, Plan: "pro"})
			return err
		}))
		v.settle = nil // background work counts here
		vs = append(vs, v)
	}
	interleaved(b, 1, writers*perWriter, vs...)
	for i, v := range vs {
		// interleaved measured allocations first: 21 runs of every variant.
		p50, p99 := latencies[i].percentiles(21 * writers * perWriter)
		b.ReportMetric(float64(p50.Microseconds()), v.name+"-p50-us")
		b.ReportMetric(float64(p99.Microseconds()), v.name+"-p99-us")
	}
}

// latencyLog keeps the latencies of a variant's writes, from any number of
// goroutines.
type latencyLog struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencyLog) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// percentiles returns the 50th and 99th percentiles of the latencies after
// the first skip.
func (l *latencyLog) percentiles(skip int) (p50, p99 time.Duration) {
	l.mu.Lock()
	d := slices.Clone(l.d[min(skip, len(l.d)):])
	l.mu.Unlock()
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return at(0.50), at(0.99)
}

// BenchmarkCapture runs the same writes with Touch and with capture, in the
// dual stages: a one-row update and a 100-row update, on two pairs of
// databases (the capture pair has the triggers; the Touch pair has none, as
// an application that Touches would). The 100-row variants' ns/op divided by
// 100 is the cost per row.
func BenchmarkCapture(b *testing.B) {
	touch := benchSetup(b)
	capture := benchSetup(b)
	for _, db := range []*pgtest.DB{capture.pair.Old, capture.pair.New} {
		if _, err := dualwrite.InstallCapture(context.Background(), db.Pool, "", nil); err != nil {
			b.Fatal(err)
		}
	}
	cf, err := dualwrite.New(context.Background(), dualwrite.Config{
		Old: capture.pair.Old.Pool, New: capture.pair.New.Pool, Stages: capture.stage, Capture: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cf.Close)
	ctx := flags.WithUser(context.Background(), "bench", nil)
	var n atomic.Int64
	write := func(f *dualwrite.Facade, users []uuid.UUID, rows int, touchRows bool) func() error {
		return func() error {
			i := int(n.Add(1))
			ids := make([]uuid.UUID, rows)
			for j := range ids {
				ids[j] = users[(i+j)%len(users)]
			}
			return dualwrite.Exec(ctx, f, dualwrite.Op{Name: "users.rename_many", OneStatement: true}, func(ctx context.Context, tx *dualwrite.Tx) error {
				if touchRows {
					for _, id := range ids {
						tx.Touch("users", id)
					}
				}
				_, err := tx.Exec(ctx, "UPDATE users SET name = $1 WHERE id = ANY($2)", fmt.Sprint(i), ids)
				return err
			})
		}
	}
	// 100 rows to update on each pair.
	for _, bb := range []*benchBundle{touch, capture} {
		for len(bb.users) < 100 {
			id := uuid.Must(uuid.NewV7())
			for _, p := range []*pgxpool.Pool{bb.pair.Old.Pool, bb.pair.New.Pool} {
				pgtest.Exec(b, p, "INSERT INTO users (id, email, name) VALUES ($1, $2, 'x')", id, id.String())
			}
			bb.users = append(bb.users, id)
		}
	}
	var vs []variant
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		for _, rows := range []int{1, 100} {
			set := func(bb *benchBundle, v variant) variant {
				op := v.op
				v.op = func() error { bb.stage.Set(stage); return op() }
				return v
			}
			vs = append(vs,
				set(touch, variant{name: fmt.Sprintf("touch-%drows-%s", rows, stage), op: write(touch.facade, touch.users, rows, true), settle: touch.facade.Wait}),
				set(capture, variant{name: fmt.Sprintf("capture-%drows-%s", rows, stage), op: write(cf, capture.users, rows, false), settle: cf.Wait}))
		}
	}
	interleaved(b, 5, 1, vs...)
}
