package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// Config configures a Facade. Old, New and Stages are required; every other
// field has a useful zero value.
type Config struct {
	// Old and New are the two databases. Both must have pgshift's tables
	// (see Install).
	Old, New *pgxpool.Pool
	// Stages decides the stage of the user in a call's context.
	Stages flags.Source
	// GlobalStages decides the stage of operations marked Op.Global. By
	// default it is Stages asked with an empty evaluation context.
	GlobalStages flags.Source
	// Schema is the schema of the tables write functions Touch; "public" by
	// default.
	Schema string
	// OtherTimeout bounds the other side's part of a write and of a shadow
	// read; 2s by default. A write whose other side takes longer is left to
	// the repair worker.
	OtherTimeout time.Duration
	// ShadowRecheck is how long a shadow read that found a difference waits
	// before reading both sides again; only a difference that is still there
	// counts as a mismatch. 100ms by default; negative counts every
	// difference at once.
	ShadowRecheck time.Duration
	// Repair configures the repair worker.
	Repair RepairConfig
	// Logger receives the facade's logs; slog.Default() when nil.
	Logger *slog.Logger
	// MeterProvider provides the facade's instruments; the global
	// OpenTelemetry provider when nil.
	MeterProvider metric.MeterProvider
}

// RepairConfig configures the repair worker.
type RepairConfig struct {
	// Disabled stops the facade from running a repair worker; another
	// process (or `pgshift repair`) must drain the logs then.
	Disabled bool
	// Interval between passes when the logs are empty; 500ms by default.
	Interval time.Duration
	// BatchSize is how many log entries one pass claims per side; 200 by
	// default.
	BatchSize int
	// Grace is how old an entry must be before the worker takes it, so that
	// writes still in flight confirm their own; OtherTimeout plus one second
	// by default.
	Grace time.Duration
	// MaxBackoff caps the wait between passes while a side is unreachable;
	// 10s by default.
	MaxBackoff time.Duration
}

// Facade routes reads and writes to the two databases by stage. It is safe
// for concurrent use. Create it with New and stop it with Close.
type Facade struct {
	old, new      *pgxpool.Pool
	stages        flags.Source
	globalStages  flags.Source
	schema        string
	otherTimeout  time.Duration
	shadowRecheck time.Duration
	repairCfg     RepairConfig
	log           *slog.Logger
	q             *pgshiftdb.Queries
	m             *instruments

	bg      sync.WaitGroup // other-side commits and shadow reads in flight
	deletes *deleter
	stop    context.CancelFunc
	worker  sync.WaitGroup

	tables sync.Map // "schema\x00table" -> *rowsync.Table, loaded on first repair

	backlogMu sync.Mutex
	backlog   [2]Backlog
}

// ErrClosed is returned by calls on a closed Facade.
var ErrClosed = errors.New("dualwrite: facade is closed")

// New validates cfg, checks that both databases have pgshift's tables and
// starts the repair worker (unless disabled).
func New(ctx context.Context, cfg Config) (*Facade, error) {
	if cfg.Old == nil || cfg.New == nil {
		return nil, errors.New("dualwrite: Config.Old and Config.New are required: give the pools of both databases")
	}
	if cfg.Stages == nil {
		return nil, errors.New("dualwrite: Config.Stages is required: give a flags.Source (flags.NewFileEvaluator, or flags.Static for one stage)")
	}
	f := &Facade{
		old: cfg.Old, new: cfg.New,
		stages: cfg.Stages, globalStages: cfg.GlobalStages,
		schema:        cfg.Schema,
		otherTimeout:  cfg.OtherTimeout,
		shadowRecheck: cfg.ShadowRecheck,
		repairCfg:     cfg.Repair,
		log:           cfg.Logger,
		q:             pgshiftdb.New(),
	}
	if f.globalStages == nil {
		f.globalStages = emptyContextSource{cfg.Stages}
	}
	if f.schema == "" {
		f.schema = "public"
	}
	if f.otherTimeout <= 0 {
		f.otherTimeout = 2 * time.Second
	}
	if f.shadowRecheck == 0 {
		f.shadowRecheck = 100 * time.Millisecond
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.log = f.log.With("component", "dualwrite")
	rc := &f.repairCfg
	if rc.Interval <= 0 {
		rc.Interval = 500 * time.Millisecond
	}
	if rc.BatchSize <= 0 {
		rc.BatchSize = 200
	}
	if rc.Grace <= 0 {
		rc.Grace = f.otherTimeout + time.Second
	}
	if rc.MaxBackoff <= 0 {
		rc.MaxBackoff = 10 * time.Second
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	var err error
	if f.m, err = newInstruments(mp, f); err != nil {
		return nil, fmt.Errorf("dualwrite: metrics: %w", err)
	}
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		if err := f.checkInstalled(ctx, side); err != nil {
			return nil, err
		}
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.stop = stop
	f.deletes = newDeleter(f)
	f.worker.Add(1)
	go func() { defer f.worker.Done(); f.deletes.run(wctx) }()
	if !rc.Disabled {
		f.worker.Add(1)
		go func() { defer f.worker.Done(); f.runRepair(wctx) }()
	}
	return f, nil
}

// checkInstalled fails with a helpful error when pgshift's tables are missing.
// An unreachable side is not an error here: the facade must start while the
// other side is down.
func (f *Facade) checkInstalled(ctx context.Context, side flags.Side) error {
	ok, err := f.q.Installed(ctx, f.pool(side))
	if err != nil {
		f.log.Warn("cannot check pgshift's tables", "side", side, "err", err)
		return nil
	}
	if !ok {
		return fmt.Errorf("dualwrite: the %s database has no pgshift.repair_log: run `pgshift install` (or dualwrite.Install) on it", side)
	}
	return nil
}

// Install creates pgshift's own tables (schema "pgshift": the repair log and
// the backfill progress) on one database. It is idempotent; run it on both
// (`pgshift install` does).
func Install(ctx context.Context, db pgshift.Querier) error {
	if err := pgshiftdb.Install(ctx, db); err != nil {
		return fmt.Errorf("dualwrite: %w", err)
	}
	return nil
}

// Close stops the repair worker, waits for writes' other-side commits and
// shadow reads in flight, and flushes confirmed log entries. It does not close
// the pools.
func (f *Facade) Close() {
	f.bg.Wait()
	f.stop()
	f.worker.Wait()
}

// Wait blocks until the other-side commits, shadow comparisons and log
// deletions started so far have finished. Tests and graceful shutdowns use it.
func (f *Facade) Wait() {
	f.bg.Wait()
	f.deletes.flush()
}

func (f *Facade) pool(side flags.Side) *pgxpool.Pool {
	if side == flags.SideNew {
		return f.new
	}
	return f.old
}

// Op describes one repository operation.
type Op struct {
	// Name identifies the operation in metrics and logs ("users.create").
	Name string
	// Global decides the operation by Config.GlobalStages instead of the
	// user in the context: for tables several cohorts write at once.
	Global bool
}

// stage decides the stage of one call.
func (f *Facade) stage(ctx context.Context, op Op) flags.Stage {
	if op.Global {
		return f.globalStages.Stage(ctx)
	}
	return f.stages.Stage(ctx)
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
