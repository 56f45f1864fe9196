package dualwrite

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// deleter deletes confirmed repair log entries in batches, off the callers'
// path. An entry whose delete is lost (the process dies first) is copied once
// more by the repair worker, which is harmless.
type deleter struct {
	f       *Facade
	mu      sync.Mutex
	pending [2][]int64
	wake    chan struct{}
	flushMu sync.Mutex
}

func newDeleter(f *Facade) *deleter {
	return &deleter{f: f, wake: make(chan struct{}, 1)}
}

func (d *deleter) add(side flags.Side, ids []int64) {
	if len(ids) == 0 {
		return
	}
	d.mu.Lock()
	d.pending[side] = append(d.pending[side], ids...)
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *deleter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			d.flush()
			return
		case <-d.wake:
		}
		// Let a few more confirmations gather into the same statement.
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Millisecond):
		}
		d.flush()
	}
}

func (d *deleter) flush() {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		d.mu.Lock()
		ids := d.pending[side]
		d.pending[side] = nil
		d.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.f.otherTimeout)
		if _, err := d.f.q.DeleteRepairEntries(ctx, d.f.pool(side), ids); err != nil {
			d.f.log.Debug("deleting confirmed repair log entries failed; the repair worker will re-copy them",
				"side", side, "entries", len(ids), "err", err)
		}
		cancel()
	}
}

// runRepair is the repair worker: it drains both sides' logs, backing off
// while a side is unreachable.
func (f *Facade) runRepair(ctx context.Context) {
	failures := 0
	for {
		busy := false
		var passErr error
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			n, failed, err := f.repairPass(ctx, side, f.repairCfg.Grace)
			if err != nil {
				passErr = err
			}
			if n+failed == f.repairCfg.BatchSize {
				busy = true
			}
			f.refreshBacklog(ctx, side)
		}
		wait := f.repairCfg.Interval
		if ctx.Err() != nil {
			return // closing: a pass cut short is not a failure
		}
		if passErr != nil {
			failures++
			wait = min(f.repairCfg.MaxBackoff, f.repairCfg.Interval<<min(failures, 8))
			if failures == 1 || failures%20 == 0 {
				f.log.Warn("repair pass failed; backing off", "err", passErr, "failures", failures, "wait", wait)
			}
		} else {
			if failures > 0 {
				f.log.Info("repair worker recovered", "after_failures", failures)
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

func (f *Facade) refreshBacklog(ctx context.Context, side flags.Side) {
	qctx, cancel := context.WithTimeout(ctx, f.otherTimeout)
	defer cancel()
	b, err := f.q.RepairBacklog(qctx, f.pool(side))
	if err != nil {
		return // keep the last known figure while the side is unreachable
	}
	f.setBacklog(side, backlogOf(b))
}

func backlogOf(b pgshiftdb.RepairBacklogRow) Backlog {
	return Backlog{Entries: b.Entries, OldestAge: time.Duration(b.OldestAgeSeconds * float64(time.Second))}
}

// Backlog reads both sides' repair logs now (not the worker's cached
// figures), indexed by flags.Side.
func (f *Facade) Backlog(ctx context.Context) ([2]Backlog, error) {
	var out [2]Backlog
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		b, err := f.q.RepairBacklog(ctx, f.pool(side))
		if err != nil {
			return out, fmt.Errorf("dualwrite: repair backlog on %s: %w", side, err)
		}
		out[side] = backlogOf(b)
		f.setBacklog(side, out[side])
	}
	return out, nil
}

// DrainReport says what Drain did.
type DrainReport struct {
	// Repaired is the number of log entries settled, by the side whose log
	// held them (rows copied from that side to the other).
	Repaired [2]int
	// Failed is the number of entries that could not be settled and were
	// postponed.
	Failed int
}

// Drain runs repair passes on both sides now, without the grace period,
// until both logs are empty or only hold entries that failed in this call.
// It is what `pgshift repair` runs; the facade's own worker does the same
// continuously.
func (f *Facade) Drain(ctx context.Context) (DrainReport, error) {
	var rep DrainReport
	for {
		progress := false
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			n, failed, err := f.repairPass(ctx, side, 0)
			if err != nil {
				return rep, err
			}
			if n > 0 {
				progress = true
			}
			rep.Repaired[side] += n
			rep.Failed += failed
		}
		if !progress {
			return rep, nil
		}
	}
}

// repairPass claims up to one batch of due entries on side src, copies their
// rows from src to the other side and settles the entries. It returns how
// many entries it settled and how many it postponed.
func (f *Facade) repairPass(ctx context.Context, src flags.Side, grace time.Duration) (settledN, failedN int, err error) {
	dst := src.Other()
	stx, err := f.pool(src).Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("repair from %s: %w", src, err)
	}
	defer func() { _ = stx.Rollback(context.WithoutCancel(ctx)) }()
	entries, err := f.q.ClaimRepairEntries(ctx, stx, pgshiftdb.ClaimRepairEntriesParams{
		GraceSeconds: grace.Seconds(), BatchSize: int32(f.repairCfg.BatchSize),
	})
	if err != nil {
		return 0, 0, fmt.Errorf("repair from %s: claim log entries: %w", src, err)
	}
	if len(entries) == 0 {
		return 0, 0, stx.Commit(ctx)
	}
	groups := groupEntries(entries)
	if err := f.lockRows(ctx, stx, groups); err != nil {
		return 0, 0, fmt.Errorf("repair from %s: lock rows: %w", src, err)
	}
	dtx, err := f.pool(dst).Begin(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("repair %s: %w", dst, err)
	}
	defer func() { _ = dtx.Rollback(context.WithoutCancel(ctx)) }()

	var settled, failed []int64
	var lastErr error
	for _, g := range groups {
		if err := f.copyGroup(ctx, stx, dtx, g); err != nil {
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
		if _, err := f.q.DeleteRepairEntriesHeld(ctx, stx, settled); err != nil {
			return 0, 0, fmt.Errorf("repair from %s: delete settled entries: %w", src, err)
		}
	}
	if len(failed) > 0 {
		msg := lastErr.Error()
		if err := f.q.PostponeRepairEntries(ctx, stx, pgshiftdb.PostponeRepairEntriesParams{
			IDs: failed, BaseDelaySeconds: f.repairCfg.Interval.Seconds(), LastError: msg,
		}); err != nil {
			return 0, 0, fmt.Errorf("repair from %s: postpone failed entries: %w", src, err)
		}
		f.log.Warn("repair postponed entries", "from", src, "to", dst, "entries", len(failed), "err", lastErr)
	}
	if err := stx.Commit(ctx); err != nil {
		return 0, 0, fmt.Errorf("repair from %s: commit: %w", src, err)
	}
	f.m.repairedRows(ctx, dst, len(settled))
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
	byTable := map[[2]string]*entryGroup{}
	seen := map[string]bool{} // table and key, NUL-separated
	for _, e := range entries {
		k := [2]string{e.TableSchema, e.TableName}
		g := byTable[k]
		if g == nil {
			g = &entryGroup{schema: e.TableSchema, table: e.TableName}
			byTable[k] = g
			groups = append(groups, g) // first appearance order: parents are usually logged first
		}
		g.ids = append(g.ids, e.ID)
		id := strings.Join(append([]string{e.TableSchema, e.TableName}, e.Key...), "\x00")
		if !seen[id] {
			seen[id] = true
			g.keys = append(g.keys, e.Key)
		}
	}
	return groups
}

// lockRows takes the advisory locks of every row in groups, in the same
// order writes take them (logTouched), so a row is never copied while a write
// of it is between its two sides.
func (f *Facade) lockRows(ctx context.Context, tx pgx.Tx, groups []*entryGroup) error {
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
	arg := pgshiftdb.LockRowsParams{TableSchemas: p.TableSchemas, TableNames: p.TableNames, Keys: p.Keys}
	return f.q.LockRows(ctx, tx, arg)
}

// copyGroup copies one table's rows inside a savepoint, so that one table's
// failure (a foreign key whose parent has not arrived yet) does not undo the
// others.
func (f *Facade) copyGroup(ctx context.Context, stx, dtx pgx.Tx, g *entryGroup) error {
	t, err := f.table(ctx, stx, g.schema, g.table)
	if err != nil {
		return err
	}
	sp, err := dtx.Begin(ctx)
	if err != nil {
		return err
	}
	if _, _, err := rowsync.CopyKeys(ctx, stx, sp, t, g.keys); err != nil {
		_ = sp.Rollback(ctx)
		return fmt.Errorf("copy %s.%s: %w", g.schema, g.table, err)
	}
	return sp.Commit(ctx)
}

func (f *Facade) table(ctx context.Context, q pgshift.Querier, schema, name string) (*rowsync.Table, error) {
	key := schema + "\x00" + name
	if t, ok := f.tables.Load(key); ok {
		return t.(*rowsync.Table), nil
	}
	t, err := rowsync.LoadTable(ctx, q, schema, name)
	if err != nil {
		return nil, err // names the table already
	}
	f.tables.Store(key, t)
	return t, nil
}
