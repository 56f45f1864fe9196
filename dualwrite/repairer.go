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
	cfg   RepairerConfig // its Old and New are the first pools
	pools *poolSet
	log   *slog.Logger
	m     *repairInstruments

	tables sync.Map // "schema\x00table" -> *rowsync.Table, loaded on first repair

	backlogMu   sync.Mutex
	backlog     Backlog      // as the worker last read it
	backlogRead [2]time.Time // when the worker last read each side's (see backlogDue)

	// sawOrder, when set (a Facade's worker), receives the last row order
	// drawn on new after each pass (see Facade.unlockedOrder).
	sawOrder func(int64)
	// onPass, when set (tests), is told each of the worker's passes: its
	// side, its batch and the entries it took.
	onPass func(side flags.Side, batch, took int)

	runMu  sync.Mutex
	cancel context.CancelFunc // of the running worker; nil when stopped
	done   chan struct{}      // closed when the running worker has returned
}

// ErrRepairerRunning is returned by Start on a Repairer already started.
var ErrRepairerRunning = errors.New("dualwrite: repairer already started")

// NewRepairer validates cfg and returns a Repairer; Start runs it in the
// background, Drain runs passes now.
func NewRepairer(cfg RepairerConfig) (*Repairer, error) {
	return newRepairer(cfg, nil)
}

// newRepairer is NewRepairer on a facade's pools (ps), or on cfg's own when
// ps is nil.
func newRepairer(cfg RepairerConfig, ps *poolSet) (*Repairer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if ps == nil {
		ps = newPoolSet(cfg.Old, cfg.New)
	}
	r := &Repairer{cfg: cfg, pools: ps, log: cfg.Logger.With("component", "repair")}
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

// pool is side's current pool, for reads that hold no generation.
func (r *Repairer) pool(side flags.Side) *pgxpool.Pool { return r.pools.cur.Load().side(side) }

func (r *Repairer) run(ctx context.Context) {
	failures := 0
	batch := [2]int{r.cfg.BatchSize, r.cfg.BatchSize} // per side, see nextBatch
	for {
		busy := false
		var passErr error
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			i := sideIndex(side)
			res, err := r.boundedPass(ctx, side, r.cfg.Grace, batch[i])
			if err != nil {
				passErr = err
			}
			full := err == nil && res.settled+res.failed == batch[i]
			if r.onPass != nil {
				r.onPass(side, batch[i], res.settled+res.failed)
			}
			batch[i] = r.nextBatch(batch[i], full)
			if full {
				busy = true
			}
			if r.backlogDue(side, full) {
				r.refreshBacklog(ctx, side)
			}
		}
		if r.sawOrder != nil && passErr == nil {
			r.readLastOrder(ctx)
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

// rollbackWait bounds a repair transaction's ROLLBACK: on a side that
// stopped answering it would wait forever (and Stop with it); past the
// bound pgx closes the connection, which ends the transaction on the server.
const rollbackWait = 5 * time.Second

// rollbackBounded rolls tx back, even after ctx ended, within rollbackWait.
func rollbackBounded(ctx context.Context, tx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	_ = tx.Rollback(rctx)
}

// readLastOrder passes the last row order drawn on new to sawOrder; a
// failure is left for the next pass.
func (r *Repairer) readLastOrder(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.Interval+time.Second)
	defer cancel()
	if k, err := ownSQL.LastRowOrder(qctx, r.pool(flags.SideNew)); err == nil {
		r.sawOrder(k)
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
	// in that direction: an authoritative entry copies from the side whose
	// log holds it, a pull entry into it.
	OldToNew, NewToOld int
	// Postponed counts entries that could not be settled and wait for a
	// later attempt (see pgshift.repair_log.last_error).
	Postponed int
}

// Drain runs repair passes on both sides now, without the grace period,
// until both logs are empty or hold only entries that failed in this call.
// An entry that fails may wait for one the other side's log holds (a child
// row whose parent's copy is there, a unique value a copy there frees):
// after a round that postponed entries and settled others, every postponed
// entry is made due again (RetryPostponed) for one more round. It needs no Start; `pgshift repair` runs
// it.
func (r *Repairer) Drain(ctx context.Context) (DrainReport, error) {
	var rep DrainReport
	for {
		settled, postponed, err := r.drainRound(ctx, &rep)
		if err != nil || postponed == 0 || settled == 0 {
			return rep, err
		}
		if _, err := r.RetryPostponed(ctx); err != nil {
			return rep, err
		}
		rep.Postponed -= postponed // tried again: counted again if they fail
	}
}

// drainRound runs passes on both sides until one settles nothing, and adds
// what they did to rep.
func (r *Repairer) drainRound(ctx context.Context, rep *DrainReport) (settled, postponed int, err error) {
	for {
		progress := false
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			res, err := r.boundedPass(ctx, side, 0, r.cfg.BatchSize)
			if err != nil {
				return settled, postponed, err
			}
			if res.settled > 0 {
				progress = true
			}
			from, into := res.settled-res.pulled, res.pulled
			if side == flags.SideNew {
				from, into = into, from
			}
			rep.OldToNew += from
			rep.NewToOld += into
			settled += res.settled
			postponed += res.failed
			rep.Postponed += res.failed
		}
		if !progress {
			return settled, postponed, nil
		}
	}
}

// passResult is what a pass did: the entries it settled (pulled of them
// pull entries, copied into the pass's side) and those it postponed.
type passResult struct{ settled, pulled, failed int }

// pass claims up to batch due entries on side src and settles them: an
// authoritative entry by copying its row from src to the other side, a pull
// entry by copying its row from the other side into src, each under the
// row's lock on new (lockSide), after weighing it against the row's other
// entries (see resolve).
func (r *Repairer) pass(ctx context.Context, src flags.Side, grace time.Duration, batch int) (passResult, error) {
	return r.passOf(ctx, src, func(tx pgx.Tx) ([]pgshiftdb.PgshiftRepairLog, error) {
		if err := ownSQL.PlanClaimByIndex(ctx, tx); err != nil {
			return nil, err
		}
		entries, err := ownSQL.ClaimRepairEntries(ctx, tx, pgshiftdb.ClaimRepairEntriesParams{
			GraceSeconds: grace.Seconds(), BatchSize: int32(batch),
		})
		if err != nil {
			return nil, err
		}
		return entries, ownSQL.PlanFreely(ctx, tx)
	})
}

// passOf is a pass over the entries claim claims in src's transaction.
func (r *Repairer) passOf(ctx context.Context, src flags.Side, claim func(pgx.Tx) ([]pgshiftdb.PgshiftRepairLog, error)) (passResult, error) {
	dst := src.Other()
	p := r.pools.acquire()
	defer p.release()
	// The canonical side first, as every writer does: no two pools are
	// waited for in opposite orders. Its transaction holds the rows' locks.
	lockTx, err := p.side(lockSide).Begin(ctx)
	if err != nil {
		return passResult{}, fmt.Errorf("repair: begin on %s: %w", lockSide, err)
	}
	defer rollbackBounded(ctx, lockTx)
	otherTx, err := p.side(lockSide.Other()).Begin(ctx)
	if err != nil {
		return passResult{}, fmt.Errorf("repair: begin on %s: %w", lockSide.Other(), err)
	}
	defer rollbackBounded(ctx, otherTx)
	stx, dtx := lockTx, otherTx
	if src != lockSide {
		stx, dtx = otherTx, lockTx
	}

	entries, err := claim(stx)
	if err != nil {
		return passResult{}, fmt.Errorf("repair from %s: claim log entries: %w", src, err)
	}
	if len(entries) == 0 {
		return passResult{}, nil
	}
	rows := groupEntries(entries)
	if err := lockRows(ctx, lockTx, rows); err != nil {
		return passResult{}, fmt.Errorf("repair from %s: lock rows on %s: %w", src, lockSide, err)
	}
	if err := resolve(ctx, stx, dtx, rows); err != nil {
		return passResult{}, fmt.Errorf("repair from %s: %w", src, err)
	}

	settled, pulled, failed, lastErr, err := r.copyRows(ctx, stx, dtx, rows)
	if err != nil {
		return passResult{}, fmt.Errorf("repair from %s: %w", src, err)
	}
	if err := dtx.Commit(ctx); err != nil {
		return passResult{}, fmt.Errorf("repair %s: commit: %w", dst, err)
	}
	if len(settled) > 0 {
		if err := ownSQL.DeleteClaimedEntries(ctx, stx, settled); err != nil {
			return passResult{}, fmt.Errorf("repair from %s: delete settled entries: %w", src, err)
		}
	}
	if len(failed) > 0 {
		if err := ownSQL.PostponeRepairEntries(ctx, stx, pgshiftdb.PostponeRepairEntriesParams{
			IDs: failed, BaseDelaySeconds: r.cfg.Interval.Seconds(), LastError: lastErr.Error(),
		}); err != nil {
			return passResult{}, fmt.Errorf("repair from %s: postpone failed entries: %w", src, err)
		}
		r.log.Warn("repair postponed entries", "side", src, "entries", len(failed), "err", lastErr)
	}
	if err := stx.Commit(ctx); err != nil {
		return passResult{}, fmt.Errorf("repair from %s: commit: %w", src, err)
	}
	r.m.repairedRows(ctx, dst, len(settled)-pulled)
	r.m.repairedRows(ctx, src, pulled)
	return passResult{settled: len(settled), pulled: pulled, failed: len(failed)}, nil
}

// catchUp repairs the entries of one routing key on both sides now, due or
// not, until none is left or a pass settles nothing (entries that fail stay,
// postponed): what the facade runs before a new authority serves the key. It
// reports whether entries of the key remain.
func (r *Repairer) catchUp(ctx context.Context, routingKey string) (remain bool, err error) {
	claim := func(tx pgx.Tx) ([]pgshiftdb.PgshiftRepairLog, error) {
		return ownSQL.ClaimKeyEntries(ctx, tx, pgshiftdb.ClaimKeyEntriesParams{
			RoutingKey: routingKey, BatchSize: int32(r.cfg.BatchSize),
		})
	}
	for {
		progress, remain := false, false
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			res, err := r.passOf(ctx, side, claim)
			if err != nil {
				return true, err
			}
			progress = progress || res.settled > 0
			remain = remain || res.failed > 0
		}
		if !progress {
			return remain, nil
		}
	}
}

// loggedRow is one row's claimed entries of one kind.
type loggedRow struct {
	schema, table string
	key           []string
	pull          bool
	ids           []int64
	// skip says a newer entry elsewhere decides this row's copy: the
	// entries are settled without copying.
	skip bool
}

func (lr *loggedRow) touched() touchedRow {
	return touchedRow{schema: lr.schema, table: lr.table, key: lr.key}
}

// groupEntries folds claimed entries into one loggedRow per row and kind,
// in the order they were first logged (parents are usually logged first).
func groupEntries(entries []pgshiftdb.PgshiftRepairLog) []*loggedRow {
	var rows []*loggedRow
	seen := map[string]*loggedRow{} // kind, schema, table and key, NUL-separated
	for _, e := range entries {
		id := fmt.Sprintf("%t\x00%s\x00%s\x00%s", e.Pull, e.TableSchema, e.TableName, strings.Join(e.Key, "\x00"))
		lr := seen[id]
		if lr == nil {
			lr = &loggedRow{schema: e.TableSchema, table: e.TableName, key: e.Key, pull: e.Pull}
			seen[id] = lr
			rows = append(rows, lr)
		}
		lr.ids = append(lr.ids, e.ID)
	}
	return rows
}

// lockRows takes the locks of rows on the canonical side, as writes do.
func lockRows(ctx context.Context, tx pgx.Tx, rows []*loggedRow) error {
	touched := make([]touchedRow, len(rows))
	for i, lr := range rows {
		touched[i] = lr.touched()
	}
	_, err := ownSQL.LockRows(ctx, tx, lockIDs(touched))
	return err
}

// resolve decides, under the rows' locks, which claimed entries still call
// for a copy. Entries of one row can disagree on its direction only when
// writes of it failed on both sides (around an authority flip, or with both
// sides failing in turn). The row's latest entry on either side, by k_order
// (drawn under the row's lock on new, so the order the writes held it in),
// decides: an authoritative entry copies from its side, a pull entry from
// the other side (the one authoritative for its write). A claimed entry that
// would copy the other way is settled without a copy: the later write's
// entry copies the row. No clock is compared. Entries without an order (new
// was unreachable; verify --repair's) come before every ordered one; between
// two of them an authoritative entry wins over a pull entry, else the
// claimed entry copies as it says.
func resolve(ctx context.Context, stx, dtx pgx.Tx, rows []*loggedRow) error {
	ours, err := rowEntries(ctx, stx, rows)
	if err != nil {
		return fmt.Errorf("read this side's entries: %w", err)
	}
	theirs, err := rowEntries(ctx, dtx, rows)
	if err != nil {
		return fmt.Errorf("read the other side's entries: %w", err)
	}
	type entry struct {
		order    int64 // -1: no entry of this kind
		push     bool
		fromHere bool // it copies from this side to the other
	}
	later := func(a, b entry) bool { return a.order > b.order || a.order == b.order && a.push && !b.push }
	for _, lr := range rows {
		o, t := ours[lr], theirs[lr]
		entries := []entry{
			{o.PushOrder, true, true}, {o.PullOrder, false, false},
			{t.PushOrder, true, false}, {t.PullOrder, false, true},
		}
		latest := entry{order: -1}
		for _, e := range entries {
			if e.order >= 0 && later(e, latest) {
				latest = e
			}
		}
		// Skip unless one of the latest entries copies the claimed way
		// (a tie between entries copying both ways keeps the claimed one).
		lr.skip = latest.order >= 0
		for _, e := range entries {
			if e.order == latest.order && e.push == latest.push && e.fromHere != lr.pull {
				lr.skip = false
			}
		}
	}
	return nil
}

// rowEntries reads q's entries of rows (their greatest orders per kind),
// keyed by the loggedRow; a row without entries there has -1 for both.
func rowEntries(ctx context.Context, q pgshift.Querier, rows []*loggedRow) (map[*loggedRow]pgshiftdb.RowEntriesRow, error) {
	out := make(map[*loggedRow]pgshiftdb.RowEntriesRow, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	touched := make([]touchedRow, len(rows))
	for i, lr := range rows {
		touched[i] = lr.touched()
		out[lr] = pgshiftdb.RowEntriesRow{PushOrder: -1, PullOrder: -1}
	}
	p := rowParams(touched)
	found, err := ownSQL.RowEntries(ctx, q, pgshiftdb.RowEntriesParams{
		Keys: p.Keys, TableSchemas: p.TableSchemas, TableNames: p.TableNames,
	})
	if err != nil {
		return nil, err
	}
	for _, e := range found {
		out[rows[e.N-1]] = e
	}
	return out, nil
}

// tableGroup is the rows of one table and one direction to copy together.
type tableGroup struct {
	schema, table string
	pull          bool
	rows          []*loggedRow // to copy, in first-seen order
}

// groupTables groups the rows to copy by table and direction, in first-seen
// order; skipped rows are in no group.
func groupTables(rows []*loggedRow) []*tableGroup {
	var groups []*tableGroup
	byTable := map[string]*tableGroup{}
	for _, lr := range rows {
		if lr.skip {
			continue
		}
		id := fmt.Sprintf("%t\x00%s\x00%s", lr.pull, lr.schema, lr.table)
		g := byTable[id]
		if g == nil {
			g = &tableGroup{schema: lr.schema, table: lr.table, pull: lr.pull}
			byTable[id] = g
			groups = append(groups, g)
		}
		g.rows = append(g.rows, lr)
	}
	return groups
}

// copyRows copies the rows that still call for a copy (authoritative rows
// from stx to dtx, pull rows from dtx to stx) and sorts the rows' entries
// into settled and failed, with the last failure's error. Skipped rows'
// entries are settled. A row that fails (its table unreadable, a value its
// destination refuses) fails alone: the others are written in the same
// pass, in the order rowsync.Apply finds (deletes first, foreign keys
// followed). The error is for a side failing as a whole.
func (r *Repairer) copyRows(ctx context.Context, stx, dtx pgx.Tx, rows []*loggedRow) (settled []int64, pulled int, failed []int64, lastErr error, err error) {
	settle := func(lr *loggedRow) {
		settled = append(settled, lr.ids...)
		if lr.pull {
			pulled += len(lr.ids)
		}
	}
	for _, lr := range rows {
		if lr.skip {
			settle(lr)
		}
	}
	fail := func(lrs []*loggedRow, err error) {
		for _, lr := range lrs {
			failed = append(failed, lr.ids...)
		}
		lastErr = err
	}
	// Each destination gets its tables' rows at once, so Apply can order
	// them by its foreign keys.
	type batch struct {
		sources []*rowsync.Source
		rows    map[*rowsync.Source][]*loggedRow
	}
	toDtx := batch{rows: map[*rowsync.Source][]*loggedRow{}}
	toStx := batch{rows: map[*rowsync.Source][]*loggedRow{}}
	for _, g := range groupTables(rows) {
		from, b := stx, &toDtx
		if g.pull {
			from, b = dtx, &toStx
		}
		s, err := r.readGroup(ctx, from, g)
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, nil, nil, ctx.Err()
			}
			fail(g.rows, fmt.Errorf("copy %s.%s: %w", g.schema, g.table, err))
			continue
		}
		b.sources = append(b.sources, s)
		b.rows[s] = g.rows
	}
	for _, d := range []struct {
		to pgx.Tx
		b  batch
	}{{dtx, toDtx}, {stx, toStx}} {
		keyErrs, err := rowsync.Apply(ctx, d.to, d.b.sources)
		if err != nil {
			return nil, 0, nil, nil, fmt.Errorf("copy rows: %w", err)
		}
		bad := map[*loggedRow]bool{}
		for _, ke := range keyErrs {
			lr := d.b.rows[ke.Source][ke.Index]
			bad[lr] = true
			lastErr = ke.Err
		}
		for _, s := range d.b.sources {
			for _, lr := range d.b.rows[s] {
				if bad[lr] {
					failed = append(failed, lr.ids...)
				} else {
					settle(lr)
				}
			}
		}
	}
	return settled, pulled, failed, lastErr, nil
}

// readGroup reads the source rows of one group in a savepoint of from, so
// that a table that cannot be read (a key that does not cast to its
// column's type) leaves the transaction usable.
func (r *Repairer) readGroup(ctx context.Context, from pgx.Tx, g *tableGroup) (*rowsync.Source, error) {
	t, err := r.table(ctx, from, g.schema, g.table)
	if err != nil {
		return nil, err
	}
	sp, err := from.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sp.Rollback(ctx) }() // read only: nothing to keep
	keys := make([][]string, len(g.rows))
	for i, lr := range g.rows {
		keys[i] = lr.key
	}
	return rowsync.ReadKeys(ctx, sp, t, keys)
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
