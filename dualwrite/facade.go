package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// Facade routes reads and writes to the two databases by stage. It is safe
// for concurrent use. Create it with New and stop it with Close.
type Facade struct {
	cfg      Config // with defaults applied; its Old and New are the first pools
	pools    *poolSet
	log      *slog.Logger
	keyWarn  *keyWarnings // warnings about one routing key, at most one per keyWarnEvery
	m        *instruments
	repairer *Repairer
	deletes  *deleter
	shadows  *shadowLog
	follows  *follows
	copyKeys sync.Map // a CopyFrom table's sanitized name -> its key columns' names
	// keyed holds the names of the tables of Config.Schema a Touch need not
	// check for a key (refuseKeyless): keyed ones, and names not found.
	keyed sync.Map
	// maxOrder is the greatest k_order this Facade's writes drew (see
	// unlockedOrder).
	maxOrder atomic.Int64
	// authority is each routing key's side as last caught up (catchup.go).
	authority *authorities
	breakers  [2]*breaker   // by side: flags.SideOld, flags.SideNew
	shadowSem chan struct{} // one token per shadow read in flight
	closed    atomic.Bool

	bg   sync.WaitGroup // other-side commits and shadow reads in flight
	stop context.CancelFunc
	done chan struct{} // closed when the deleter has returned
}

// bound gives a call Config.CallTimeout unless its context ends sooner;
// timedOut says whether err is that bound's doing, and logs it: a call that
// runs into it is most likely waiting on a hung authoritative side.
func (f *Facade) bound(ctx context.Context) (bctx context.Context, cancel context.CancelFunc, timedOut func(op Op, err error) error) {
	pass := func(_ Op, err error) error { return err }
	if f.cfg.CallTimeout < 0 {
		return ctx, func() {}, pass
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= f.cfg.CallTimeout {
		return ctx, func() {}, pass
	}
	bctx, cancel = context.WithTimeout(ctx, f.cfg.CallTimeout)
	return bctx, cancel, func(op Op, err error) error {
		if err == nil || ctx.Err() != nil || bctx.Err() == nil {
			return err
		}
		// err names the side (callError).
		f.log.Warn("a call ran past Config.CallTimeout: is the authoritative side hung?", "op", op.Name,
			"call_timeout", f.cfg.CallTimeout, "err", err)
		return fmt.Errorf("%w (Config.CallTimeout, %v, ended the call)", err, f.cfg.CallTimeout)
	}
}

// sawOrder notes an order (k_order) a write drew.
func (f *Facade) sawOrder(k int64) {
	for {
		m := f.maxOrder.Load()
		if k <= m || f.maxOrder.CompareAndSwap(m, k) {
			return
		}
	}
}

// unlockedOrder is the order of a row a write could not lock (new did not
// answer, or its key came from RETURNING): odd, just above every order this
// Facade has seen drawn (its own writes', and the last one drawn on new,
// which its repair worker reads after each pass: other processes' writes),
// so repair puts it after every write the process knew of and before every
// write that locks the row later (locked orders are even).
func (f *Facade) unlockedOrder() int64 { return f.maxOrder.Load() + 1 }

// ErrClosed is returned by calls on a closed Facade.
var ErrClosed = errors.New("dualwrite: facade is closed")

// New validates cfg, checks that both databases have pgshift's tables and
// starts the repair worker (unless Config.RepairDisabled).
func New(ctx context.Context, cfg Config) (*Facade, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Facade{cfg: cfg, pools: newPoolSet(cfg.Old, cfg.New), log: cfg.Logger.With("component", "dualwrite"),
		follows: newFollows(), authority: newAuthorities(), shadowSem: make(chan struct{}, cfg.ShadowConcurrency)}
	f.keyWarn = newKeyWarnings(f.log)
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		f.breakers[sideIndex(side)] = newBreaker(side, cfg.BreakerFailures, cfg.BreakerCooldown, cfg.OtherTimeout,
			func(ctx context.Context) error { return pingAlone(ctx, f.pool(side)) }, f.log)
	}
	var err error
	if f.m, err = newInstruments(cfg.MeterProvider, f); err != nil {
		return nil, fmt.Errorf("dualwrite: metrics: %w", err)
	}
	f.repairer, err = newRepairer(RepairerConfig{
		Old: cfg.Old, New: cfg.New, RepairConfig: cfg.Repair,
		Logger: cfg.Logger, MeterProvider: cfg.MeterProvider,
	}, f.pools)
	if err != nil {
		return nil, err
	}
	f.repairer.sawOrder = f.sawOrder
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		if err := f.checkInstalled(ctx, side); err != nil {
			return nil, err
		}
		f.checkDurable(ctx, side)
	}
	f.learnKeyedTables(ctx)
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.stop, f.done = stop, make(chan struct{})
	f.deletes = newDeleter(f)
	f.shadows = newShadowLog()
	go func() {
		defer close(f.done)
		var wg sync.WaitGroup
		wg.Go(func() { f.shadows.run(wctx, f) })
		wg.Go(func() { newHeartbeat().run(wctx, f) })
		for _, b := range f.breakers {
			wg.Go(func() { b.run(wctx) })
		}
		f.deletes.run(wctx)
		wg.Wait()
	}()
	if !cfg.RepairDisabled {
		if err := f.repairer.Start(ctx); err != nil {
			stop()
			<-f.done
			return nil, err
		}
	}
	return f, nil
}

// Repairer is the facade's repair worker: running unless
// Config.RepairDisabled, and usable either way for Drain and Backlog.
func (f *Facade) Repairer() *Repairer { return f.repairer }

// checkInstalled fails with a helpful error when pgshift's tables are missing.
// An unreachable side is not an error here: the facade must start while the
// other side is down.
func (f *Facade) checkInstalled(ctx context.Context, side flags.Side) error {
	ok, err := ownSQL.Installed(ctx, f.pool(side))
	if err != nil {
		f.log.Warn("cannot check pgshift's tables", "side", side, "err", err)
		return nil
	}
	if !ok {
		return fmt.Errorf("dualwrite: the %s database lacks pgshift's tables, or has those of an earlier pgshift: run `pgshift install` (or dualwrite.Install) on it", side)
	}
	if err := pgshiftdb.CheckOwnership(ctx, f.pool(side)); errors.Is(err, pgshiftdb.ErrForeignObjects) {
		return fmt.Errorf("dualwrite: the %s database: %w", side, err)
	} else if err != nil {
		f.log.Warn("cannot check the owners of pgshift's schema", "side", side, "err", err)
	}
	if priv, err := ownSQL.WritePrivileges(ctx, f.pool(side)); err != nil {
		f.log.Warn("cannot check the role's privileges on pgshift's schema", "side", side, "err", err)
	} else if !priv.Log || (side == lockSide && !priv.RowOrder) {
		return fmt.Errorf("dualwrite: the %s database: the application's role lacks privileges on pgshift's schema that every dual write needs (the repair log, and on new the sequence pgshift.row_order that orders it); grant them: GRANT USAGE ON SCHEMA pgshift TO <role>; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgshift TO <role>; GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgshift TO <role>", side)
	}
	if f.cfg.Capture || f.cfg.Strict {
		captured, err := ownSQL.CaptureInstalled(ctx, f.pool(side))
		if err == nil && !captured {
			return fmt.Errorf("dualwrite: Config.Capture and Config.Strict need the capture triggers, and the %s database has none: run `pgshift install --capture` (or dualwrite.InstallCapture) on it", side)
		}
	}
	return nil
}

// checkDurable warns when side may lose commits in a crash (fsync or
// synchronous_commit off): the guarantee needs durable commits, since the
// facade forgets a write's repair-log records once both sides committed it.
func (f *Facade) checkDurable(ctx context.Context, side flags.Side) {
	s, err := ownSQL.DurabilitySettings(ctx, f.pool(side))
	if err != nil {
		return // unreachable: checkInstalled has said so
	}
	if !s.Durable() {
		f.log.Warn("a crash of this database can lose commits the facade has already settled, and nothing would repair them: turn fsync and synchronous_commit on for the migration",
			"side", side, "fsync", s.Fsync, "synchronous_commit", s.SynchronousCommit)
	}
}

// Install creates pgshift's own tables (schema "pgshift": the repair log and
// the backfill progress) on one database. It is idempotent; run it on both
// (`pgshift install` does). It refuses a schema pgshift, or objects in it,
// that a role other than the installing one (or one it is a member of, the
// database's owner, or a superuser) owns, and triggers on pgshift's tables:
// pgshift's writes would run their code with the writer's privileges. New
// refuses them too, by the same rule for the application's role: install as
// that role, a role it is a member of, or the database's owner.
func Install(ctx context.Context, db pgshift.Querier) error {
	if err := pgshiftdb.Install(ctx, db); err != nil {
		return fmt.Errorf("dualwrite: %w", err)
	}
	return nil
}

// Close stops the repair worker, waits for writes' other-side commits and
// shadow reads in flight, and deletes confirmed log entries. Calls after
// Close return ErrClosed; call it once the application has stopped calling.
// It does not close the pools. Calls after the first do nothing.
func (f *Facade) Close() {
	if f.closed.Swap(true) {
		return
	}
	f.bg.Wait()
	f.repairer.Stop()
	f.stop()
	<-f.done
}

// Wait blocks until the other-side commits, shadow comparisons and log
// deletions started so far have finished, and the shadow-read counts are
// recorded on new. Tests and graceful shutdowns use it.
func (f *Facade) Wait() {
	f.bg.Wait()
	f.deletes.flush()
	ctx, cancel := context.WithTimeout(context.Background(), f.shadowFlushTimeout())
	defer cancel()
	f.shadows.flush(ctx, f)
}

// pingAlone connects to p's database on a connection of its own (not one of
// p's, which a busy pool may have none of, or hold broken) and pings it.
func pingAlone(ctx context.Context, p *pgxpool.Pool) error {
	conn, err := pgx.ConnectConfig(ctx, p.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	return conn.Ping(ctx)
}

// breaker is side's breaker.
func (f *Facade) breaker(side flags.Side) *breaker { return f.breakers[sideIndex(side)] }

func sideIndex(side flags.Side) int {
	if side == flags.SideNew {
		return 1
	}
	return 0
}

// pool is side's current pool, for work that holds no generation (start-up
// checks, the deleter's statements).
func (f *Facade) pool(side flags.Side) *pgxpool.Pool { return f.pools.cur.Load().side(side) }

// SetPool makes p the pool of side from now on, as when a database's
// address changes after a failover: calls and background work in flight
// finish on the pool they started with, new calls use p, nothing fails. It
// returns the previous pool once nothing uses it any more; close it then.
// The facade's repair worker follows the change too.
func (f *Facade) SetPool(side flags.Side, p *pgxpool.Pool) *pgxpool.Pool {
	return f.pools.set(side, p)
}

// Op describes one repository operation.
type Op struct {
	// Name identifies the operation in metrics and logs ("users.create").
	Name string
	// Global decides the operation by Config.GlobalStages instead of the
	// user in the context: for tables several cohorts write at once.
	Global bool
	// OneStatement promises that the write function runs exactly one
	// statement (as a repository method over one sqlc query does). The
	// facade then sends COMMIT in the same round trip as the statement
	// wherever it may: in off and complete the write is one autocommit
	// statement, as on pgx directly; in the dual stages the other side's
	// BEGIN, log record, statement and COMMIT are one round trip. The
	// statement commits whatever the write function returns afterwards, so
	// errors it returns after its statement must describe that statement's
	// outcome (no row found, the other side diverged). A second statement
	// fails with ErrNotOneStatement.
	OneStatement bool
	// NewRows promises that the write only inserts rows whose keys were
	// made for this call (UUIDv7s the application generated), so no other
	// write of those rows can be in flight and the other side needs nothing
	// from the authoritative result. In the dual stages the facade then
	// writes both sides at once, each committing on its own with its log
	// record (one round trip for a OneStatement insert, against three), and
	// the write function gets prev == nil on both sides. Do not set it for
	// keys the database assigns (identity columns), which the other side
	// must take from the authoritative result.
	NewRows bool
}

// stage decides the stage of one call; on a closed facade it is ErrClosed.
func (f *Facade) stage(ctx context.Context, op Op) (flags.Stage, error) {
	switch {
	case f.closed.Load():
		return 0, ErrClosed
	case op.Global:
		return f.cfg.GlobalStages.Stage(ctx), nil
	}
	return f.cfg.Stages.Stage(ctx), nil
}

// emptyContextSource asks a source with no user in the context.
type emptyContextSource struct{ src flags.Source }

func (e emptyContextSource) Stage(ctx context.Context) flags.Stage {
	return e.src.Stage(flags.WithUser(ctx, "", nil))
}

// Outcome records what the facade did for one call, for callers that show it
// (the demo's response headers, for one).
type Outcome struct {
	// Op is the operation's name.
	Op string
	// Stage is the stage the call was decided by.
	Stage flags.Stage
	// Served is the side whose answer the caller got.
	Served flags.Side
}

type outcomeKey struct{}

// WithOutcome returns a context in which the facade records the outcome of
// calls made with it. Each call overwrites the previous outcome.
func WithOutcome(ctx context.Context) (context.Context, *Outcome) {
	o := new(Outcome)
	return context.WithValue(ctx, outcomeKey{}, o), o
}

func recordOutcome(ctx context.Context, op Op, stage flags.Stage, served flags.Side) {
	if o, ok := ctx.Value(outcomeKey{}).(*Outcome); ok {
		*o = Outcome{Op: op.Name, Stage: stage, Served: served}
	}
}
