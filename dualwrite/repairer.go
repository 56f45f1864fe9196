package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// Repairer drains the repair logs: it copies each logged row, as it is now,
// from the side that logged it to the other side (or deletes it there when
// it is gone), then settles the entry. Copying current state rather than
// replaying commands makes a repair idempotent and blind to ordering.
//
// A Facade runs one (Facade.Repairer) unless Config.RepairDisabled is set.
// Run one of your own with NewRepairer to drain the logs from another
// process: any number of repairers, in any processes, share the logs, since
// each claims its entries with FOR UPDATE SKIP LOCKED. `pgshift repair` is a
// Repairer's Drain.
type Repairer struct {
	cfg RepairerConfig
	log *slog.Logger
	m   *repairInstruments

	tables sync.Map // "schema\x00table" -> *rowsync.Table, loaded on first repair

	backlogMu sync.Mutex
	backlog   Backlog // as the worker last read it

	runMu  sync.Mutex
	cancel context.CancelFunc // of the running worker; nil when stopped
	done   chan struct{}      // closed when the running worker has returned
}

// ErrRepairerRunning is returned by Start on a Repairer already started.
var ErrRepairerRunning = errors.New("dualwrite: repairer already started")

// NewRepairer validates cfg and returns a Repairer; Start runs it in the
// background, Drain runs passes now.
func NewRepairer(cfg RepairerConfig) (*Repairer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Repairer{cfg: cfg, log: cfg.Logger.With("component", "repair")}
	var err error
	if r.m, err = newRepairInstruments(cfg.MeterProvider, r); err != nil {
		return nil, fmt.Errorf("dualwrite: repair metrics: %w", err)
	}
	return r, nil
}

// Start runs the repair worker until Stop: it drains both sides' logs,
// taking only entries older than Grace, and backs off while a side is
// unreachable.
func (r *Repairer) Start(ctx context.Context) error {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.cancel != nil {
		return ErrRepairerRunning
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		r.run(wctx)
	}()
	return nil
}

// Stop stops the worker Start started and waits for it; a pass in progress
// is cut short (its entries stay for the next pass). Stop on a stopped
// Repairer does nothing.
func (r *Repairer) Stop() {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel, r.done = nil, nil
}

func (r *Repairer) pool(side flags.Side) *pgxpool.Pool {
	if side == flags.SideNew {
		return r.cfg.New
	}
	return r.cfg.Old
}

func (r *Repairer) run(ctx context.Context) {
	failures := 0
	for {
		busy := false
		var passErr error
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			n, failed, err := r.pass(ctx, side, r.cfg.Grace)
			if err != nil {
				passErr = err
			}
			if n+failed == r.cfg.BatchSize {
				busy = true
			}
			r.refreshBacklog(ctx, side)
		}
		wait := r.cfg.Interval
		if ctx.Err() != nil {
			return // stopping: a pass cut short is not a failure
		}
		if passErr != nil {
			failures++
			wait = min(r.cfg.MaxBackoff, r.cfg.Interval<<min(failures, 8))
			if failures == 1 || failures%20 == 0 {
				r.log.Warn("repair pass failed; backing off", "err", passErr, "failures", failures, "wait", wait)
			}
		} else {
			if failures > 0 {
				r.log.Info("repair worker recovered", "after_failures", failures)
			}
			failures = 0
			if busy {
				wait = 0
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// refreshBacklog reads one side's backlog for LastBacklog and the gauges;
// while the side is unreachable the last known figure stays.
func (r *Repairer) refreshBacklog(ctx context.Context, side flags.Side) {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.Interval+time.Second)
	defer cancel()
	if b, err := ReadBacklog(qctx, r.pool(side)); err == nil {
		r.setBacklog(side, b)
	}
}

func (r *Repairer) setBacklog(side flags.Side, b SideBacklog) {
	r.backlogMu.Lock()
	defer r.backlogMu.Unlock()
	if side == flags.SideNew {
		r.backlog.New = b
	} else {
		r.backlog.Old = b
	}
}

// LastBacklog is both repair logs as the worker last read them (zero until
// it has, and for a Repairer that was never started): cheap, for gauges and
// dashboards. Backlog reads them now.
func (r *Repairer) LastBacklog() Backlog {
	r.backlogMu.Lock()
	defer r.backlogMu.Unlock()
	return r.backlog
}

// Backlog reads both sides' repair logs now.
func (r *Repairer) Backlog(ctx context.Context) (Backlog, error) {
	var out Backlog
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		b, err := ReadBacklog(ctx, r.pool(side))
		if err != nil {
			return out, fmt.Errorf("dualwrite: repair log on %s: %w", side, err)
		}
		r.setBacklog(side, b)
		if side == flags.SideNew {
			out.New = b
		} else {
			out.Old = b
		}
	}
	return out, nil
}

// Repaired is the number of rows this Repairer has copied or deleted.
func (r *Repairer) Repaired() int64 { return r.m.repairedTotal.Load() }

// DrainReport says what Drain did.
type DrainReport struct {
	// OldToNew and NewToOld count the log entries settled by copying rows
	// in that direction (from the side whose log held them).
	OldToNew, NewToOld int
	// Postponed counts entries that could not be settled and wait for a
	// later attempt (see pgshift.repair_log.last_error).
	Postponed int
}

// Drain runs repair passes on both sides now, without the grace period,
// until both logs are empty or hold only entries that failed in this call.
// It needs no Start; `pgshift repair` runs it.
func (r *Repairer) Drain(ctx context.Context) (DrainReport, error) {
	var rep DrainReport
	for {
		progress := false
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			n, failed, err := r.pass(ctx, side, 0)
			if err != nil {
				return rep, err
			}
			if n > 0 {
				progress = true
			}
			if side == flags.SideOld {
				rep.OldToNew += n
			} else {
				rep.NewToOld += n
			}
			rep.Postponed += failed
		}
		if !progress {
			return rep, nil
		}
	}
}

// pass claims up to one batch of due entries on side src, copies their
// rows from src to the other side and settles the entries. It returns how
// many entries it settled and how many it postponed.
func (r *Repairer) pass(ctx context.Context, src flags.Side, grace time.Duration) (settledN, failedN int, err error) {
	dst := src.Other()
	stx, err := r.pool(src).Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("repair from %s: %w", src, err)
	}
	defer func() { _ = stx.Rollback(context.WithoutCancel(ctx)) }()
	entries, err := ownSQL.ClaimRepairEntries(ctx, stx, pgshiftdb.ClaimRepairEntriesParams{
		GraceSeconds: grace.Seconds(), BatchSize: int32(r.cfg.BatchSize),
	})
	if err != nil {
		return 0, 0, fmt.Errorf("repair from %s: claim log entries: %w", src, err)
	}
	if len(entries) == 0 {
		return 0, 0, stx.Commit(ctx)
	}
	groups := groupEntries(entries)
	if err := lockRows(ctx, stx, groups); err != nil {
		return 0, 0, fmt.Errorf("repair from %s: lock rows: %w", src, err)
	}
	dtx, err := r.pool(dst).Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("repair %s: %w", dst, err)
	}
	defer func() { _ = dtx.Rollback(context.WithoutCancel(ctx)) }()

	var settled, failed []int64
	var lastErr error
	for _, g := range groups {
		if err := r.copyGroup(ctx, stx, dtx, g); err != nil {
			failed = append(failed, g.ids...)
			lastErr = err
			continue
		}
		settled = append(settled, g.ids...)
	}
	if err := dtx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("repair %s: commit: %w", dst, err)
	}
	if len(settled) > 0 {
		if _, err := ownSQL.DeleteRepairEntriesHeld(ctx, stx, settled); err != nil {
			return 0, 0, fmt.Errorf("repair from %s: delete settled entries: %w", src, err)
		}
	}
	if len(failed) > 0 {
		if err := ownSQL.PostponeRepairEntries(ctx, stx, pgshiftdb.PostponeRepairEntriesParams{
			IDs: failed, BaseDelaySeconds: r.cfg.Interval.Seconds(), LastError: lastErr.Error(),
		}); err != nil {
			return 0, 0, fmt.Errorf("repair from %s: postpone failed entries: %w", src, err)
		}
		r.log.Warn("repair postponed entries", "from", src, "to", dst, "entries", len(failed), "err", lastErr)
	}
	if err := stx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("repair from %s: commit: %w", src, err)
	}
	r.m.repairedRows(ctx, dst, len(settled))
	return len(settled), len(failed), nil
}

// entryGroup is the log entries of one table, keys deduplicated.
type entryGroup struct {
	schema, table string
	keys          [][]string
	ids           []int64
}

func groupEntries(entries []pgshiftdb.PgshiftRepairLog) []*entryGroup {
	var groups []*entryGroup
	byTable := map[string]*entryGroup{} // schema NUL table
	seen := map[string]bool{}           // schema, table and key, NUL-separated
	for _, e := range entries {
		tk := e.TableSchema + "\x00" + e.TableName
		g := byTable[tk]
		if g == nil {
			g = &entryGroup{schema: e.TableSchema, table: e.TableName}
			byTable[tk] = g
			groups = append(groups, g) // first appearance order: parents are usually logged first
		}
		g.ids = append(g.ids, e.ID)
		id := tk + "\x00" + strings.Join(e.Key, "\x00")
		if !seen[id] {
			seen[id] = true
			g.keys = append(g.keys, e.Key)
		}
	}
	return groups
}

// lockRows takes the advisory locks of every row in groups, in the order
// writes take them (see logParams), so a row is never copied while a write
// of it is between its two sides.
func lockRows(ctx context.Context, tx pgx.Tx, groups []*entryGroup) error {
	var rows []touchedRow
	for _, g := range groups {
		for _, k := range g.keys {
			rows = append(rows, touchedRow{schema: g.schema, table: g.table, key: k})
		}
	}
	p, err := logParams(rows, "", "")
	if err != nil {
		return err
	}
	return ownSQL.LockRows(ctx, tx, pgshiftdb.LockRowsParams{TableSchemas: p.TableSchemas, TableNames: p.TableNames, Keys: p.Keys})
}

// copyGroup copies one table's rows inside a savepoint on each side, so that
// one table's failure (a foreign key whose parent has not arrived yet, a key
// that does not cast to its column's type) undoes neither the other tables'
// copies nor the source transaction that settles the entries.
func (r *Repairer) copyGroup(ctx context.Context, stx, dtx pgx.Tx, g *entryGroup) error {
	t, err := r.table(ctx, stx, g.schema, g.table)
	if err != nil {
		return err
	}
	ssp, err := stx.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = ssp.Rollback(ctx) }() // read only: nothing to keep
	dsp, err := dtx.Begin(ctx)
	if err != nil {
		return err
	}
	if _, _, err := rowsync.CopyKeys(ctx, ssp, dsp, t, g.keys); err != nil {
		_ = dsp.Rollback(ctx)
		return fmt.Errorf("copy %s.%s: %w", g.schema, g.table, err)
	}
	return dsp.Commit(ctx)
}

func (r *Repairer) table(ctx context.Context, q pgshift.Querier, schema, name string) (*rowsync.Table, error) {
	key := schema + "\x00" + name
	if t, ok := r.tables.Load(key); ok {
		return t.(*rowsync.Table), nil
	}
	t, err := rowsync.LoadTable(ctx, q, schema, name)
	if err != nil {
		return nil, err // names the table already
	}
	r.tables.Store(key, t)
	return t, nil
}
