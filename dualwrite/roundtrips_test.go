package dualwrite_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
	"github.com/pgshift/pgshift/repo/db"
)

// roundTrips counts the round trips a pool makes: one per query or exec,
// one per batch (pipelined statements travel together). The repair log's
// clean-up, which runs in batches off every caller's path, and the facade's
// report of itself every 10 s (pgshift.facades) are not counted.
// It also lists the statements the pool sends (statements), by their sqlc
// name or their first words.
type roundTrips struct {
	n  atomic.Int64
	mu sync.Mutex
	// statements are the statements sent, in order; background is set
	// while a batch of background work is being sent.
	statements []string
	background bool
}

// backgroundWork says whether sql is work the counts leave out.
func backgroundWork(sql string) bool {
	for _, background := range []string{"DeleteRepairEntries", "RecordFacade", "ForgetFacade"} {
		if strings.HasPrefix(sql, "-- name: "+background+" ") {
			return true
		}
	}
	return false
}

// statementName is sql's sqlc name, or its first two words.
func statementName(sql string) string {
	if name, ok := strings.CutPrefix(sql, "-- name: "); ok {
		return strings.Fields(name)[0]
	}
	words := strings.Fields(sql)
	return strings.Join(words[:min(2, len(words))], " ")
}

func (r *roundTrips) statement(sql string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.background {
		r.statements = append(r.statements, statementName(sql))
	}
}

// since is the statements sent after the first n.
func (r *roundTrips) since(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.statements[n:])
}

func (r *roundTrips) sent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.statements)
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if backgroundWork(d.SQL) {
		return ctx
	}
	r.n.Add(1)
	r.statement(d.SQL)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	r.mu.Lock()
	r.background = len(d.Batch.QueuedQueries) > 0 && backgroundWork(d.Batch.QueuedQueries[0].SQL)
	r.mu.Unlock()
	if !r.background {
		r.n.Add(1)
	}
	return ctx
}
func (r *roundTrips) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.statement(d.SQL)
}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	r.mu.Lock()
	r.background = false
	r.mu.Unlock()
}

// tracedPool is a pool on db whose round trips are counted.
func tracedPool(t *testing.T, db *pgtest.DB) (*pgxpool.Pool, *roundTrips) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	cfg.MaxConns = 1 // one warm connection: no round trips spent preparing statements
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, rt
}

// TestRoundTrips counts the round trips of each kind of write on each side,
// and lists the statements each side runs, once the connections are warm
// (their statements prepared): the figures BENCHMARKS.md explains the costs
// with. "Follow" round trips are made
// after the caller has its answer (new's copy in dualwrite and shadow).
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	oldPool, oldRT := tracedPool(t, pair.Old)
	newPool, newRT := tracedPool(t, pair.New)
	var stage atomic.Uint32
	f, err := dualwrite.New(context.Background(), dualwrite.Config{
		Old: oldPool, New: newPool, Stages: sourceFunc(func() flags.Stage { return flags.Stage(stage.Load()) }),
		RepairDisabled: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	store := repo.New(f)
	ctx := userCtx("rt")
	seed := uuid.Must(uuid.NewV7())
	seedUser(t, pair, seed, "seed")
	var n atomic.Int64
	writes := map[string]func() error{
		"update": func() error {
			_, err := store.Users.Update(ctx, seed, repo.UserUpdate{Name: fmt.Sprint(n.Add(1))})
			return err
		},
		"insert-new-rows": func() error {
			_, err := store.Users.Create(ctx, repo.NewUser{Email: fmt.Sprintf("rt%d@example.com", n.Add(1)), Name: "rt"})
			return err
		},
		"three-statements": func() error {
			_, err := dualwrite.Write(ctx, f, dualwrite.Op{Name: "users.rename_with_event"}, func(ctx context.Context, tx *dualwrite.Tx, prev *db.Event) (db.Event, error) {
				tx.Touch("users", seed)
				id := int64(0)
				if prev != nil {
					id = prev.ID
				}
				e, err := threeStatements(ctx, tx, seed, id, fmt.Sprint(n.Add(1)), time.Now().UTC().Truncate(time.Microsecond))
				if err == nil {
					tx.Touch("events", e.ID)
				}
				return e, err
			})
			return err
		},
	}
	pgtest.Exec(t, pair.New.Pool, "SELECT setval('events_id_seq', 1000000000)")
	// Each case also lists the statements each side runs, in order (sqlc
	// names, or the first words): what BENCHMARKS.md says each costs and
	// which of them the guarantee needs. Under old's authority old runs
	// FenceOld (pgshift.fence_old) in the write's transaction, so that a
	// move of the key to new waits for old's COMMIT however late it lands. LogRow(s) is a repair-log record;
	// the facade settles (deletes) those of writes that reached both sides
	// off the caller's path, many at a time (DeleteRepairEntries, not
	// listed).
	const (
		lockWithin = "SetLockTimeout Fence LockRow ResetLockTimeout" // new's lock round trip, bounded (old authoritative)
	)
	for _, tc := range []struct {
		stage    flags.Stage
		write    string
		old, new int64
		oldStmts string
		newStmts string
	}{
		// The naive migrator: one round trip per side.
		{flags.StageOff, "update", 1, 0, "UpdateUser", ""},      // autocommit, as pgx directly
		{flags.StageComplete, "update", 0, 1, "", "UpdateUser"}, // likewise on new
		// new: BEGIN+lock; old: BEGIN+log+UPDATE+COMMIT; then new: UPDATE+COMMIT (follow)
		{flags.StageDualWrite, "update", 1, 2, "BEGIN LogRow FenceOld UpdateUser COMMIT", "BEGIN " + lockWithin + " UpdateUser COMMIT"},
		{flags.StageShadow, "update", 1, 2, "BEGIN LogRow FenceOld UpdateUser COMMIT", "BEGIN " + lockWithin + " UpdateUser COMMIT"}, // as dualwrite
		// new: BEGIN+lock+UPDATE; old: BEGIN+pull+UPDATE+COMMIT; new: COMMIT
		{flags.StageLive, "update", 1, 2, "BEGIN LogRow UpdateUser COMMIT", "BEGIN Fence LockRow UpdateUser COMMIT"},
		{flags.StageRampdown, "update", 1, 2, "BEGIN LogRow UpdateUser COMMIT", "BEGIN Fence LockRow UpdateUser COMMIT"}, // as live
		// NewRows: both sides at once; with old authoritative, new's
		// COMMIT waits for old's and goes as a follow (new must never hold
		// a copy old may still roll back); with new authoritative, old's
		// COMMIT waits for new's, in a round trip of its own (a repair
		// must never find old's copy before new holds the row).
		{flags.StageDualWrite, "insert-new-rows", 1, 2, "BEGIN LogRow FenceOld CreateUser COMMIT", "BEGIN Fence LockRow LogRow CreateUser COMMIT"},
		{flags.StageLive, "insert-new-rows", 2, 1, "BEGIN LogRow CreateUser COMMIT", "BEGIN Fence LockRow LogRow CreateUser COMMIT"},
		// The naive migrator in a transaction on each side: BEGIN, three
		// statements, COMMIT: 5 per side.
		// dualwrite: new: BEGIN+lock; old: BEGIN+log+SELECT, UPDATE, INSERT,
		// log of the event+COMMIT, while new locks the event (its key came
		// from RETURNING); then new (follow): SELECT, UPDATE, INSERT, COMMIT.
		// Five on the caller's path.
		{flags.StageDualWrite, "three-statements", 4, 6,
			"BEGIN LogRow FenceOld GetUser UpdateUser CreateEvent LogRow COMMIT",
			"BEGIN " + lockWithin + " SetLockTimeout LockRow ResetLockTimeout GetUser UpdateUser CreateEventWithID COMMIT"},
		// live: new: BEGIN+lock+SELECT, UPDATE, INSERT, the event's lock
		// (its key came from RETURNING: a repair pass claiming old's pull
		// record must wait for new's COMMIT); old: BEGIN+pull
		// records+SELECT, UPDATE, INSERT, COMMIT; new: COMMIT. Nine.
		{flags.StageLive, "three-statements", 4, 5,
			"BEGIN LogRows GetUser UpdateUser CreateEventWithID COMMIT",
			"BEGIN Fence LockRow GetUser UpdateUser CreateEvent LockRow COMMIT"},
	} {
		stage.Store(uint32(tc.stage))
		write := writes[tc.write]
		// Warm up: the first writes prepare their statements.
		for range 3 {
			if err := write(); err != nil {
				t.Fatal(err)
			}
		}
		f.Wait()
		o0, n0 := oldRT.n.Load(), newRT.n.Load()
		os0, ns0 := oldRT.sent(), newRT.sent()
		if err := write(); err != nil {
			t.Fatal(err)
		}
		f.Wait()
		if o, nw := oldRT.n.Load()-o0, newRT.n.Load()-n0; o != tc.old || nw != tc.new {
			t.Errorf("%s %s: %d round trips on old, %d on new; want %d and %d", tc.stage, tc.write, o, nw, tc.old, tc.new)
		}
		for _, side := range []struct {
			name string
			got  []string
			want string
		}{{"old", oldRT.since(os0), tc.oldStmts}, {"new", newRT.since(ns0), tc.newStmts}} {
			if got := strings.Join(side.got, " "); got != side.want {
				t.Errorf("%s %s: statements on %s\n got: %s\nwant: %s", tc.stage, tc.write, side.name, got, side.want)
			}
		}
	}
}

// sourceFunc is a flags.Source made of a function.
type sourceFunc func() flags.Stage

func (s sourceFunc) Stage(context.Context) flags.Stage { return s() }
