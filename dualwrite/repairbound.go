package dualwrite

import (
	"context"
	"fmt"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// backlogRefreshEvery is how often a busy repair worker reads a side's
// backlog (a count over the whole log: hundreds of milliseconds at a
// million entries). An idle worker reads it after every pass.
const backlogRefreshEvery = 10 * time.Second

// boundedPass is pass bounded by RepairConfig.PassTimeout: a side that hangs
// fails the pass within that bound, with an error that says so, instead of
// holding the worker until the connection resets.
func (r *Repairer) boundedPass(ctx context.Context, side flags.Side, grace time.Duration, batch int) (res passResult, err error) {
	pctx, cancel := context.WithTimeout(ctx, r.cfg.PassTimeout)
	defer cancel()
	res, err = r.pass(pctx, side, grace, batch)
	if err != nil && ctx.Err() == nil && pctx.Err() != nil {
		err = fmt.Errorf("repair from %s: the pass did not finish within RepairConfig.PassTimeout (%v): one of the databases is hung or very slow: %w",
			side, r.cfg.PassTimeout, err)
	}
	return res, err
}

// backlogBatch is the batch a worker's passes grow to over a backlog:
// pgshift repair's default. A log that fills the worker's batch (an outage's
// backlog, a verify --repair) drains as fast as an operator's drain would,
// while a log the application's writes keep small is taken in short passes
// of RepairConfig.BatchSize that hold few rows' locks.
const backlogBatch = 2000

// nextBatch is the batch of a worker's next pass on a side after a pass of
// batch entries: twice as large (up to backlogBatch, or BatchSize when that
// is larger) after a full pass, BatchSize again after any other.
func (r *Repairer) nextBatch(batch int, full bool) int {
	if !full {
		return r.cfg.BatchSize
	}
	return max(r.cfg.BatchSize, min(2*batch, backlogBatch))
}

// backlogDue reports whether the worker should read side's backlog now: after
// a pass that found the log drained (busy false), or when the last read is
// backlogRefreshEvery old.
func (r *Repairer) backlogDue(side flags.Side, busy bool) bool {
	r.backlogMu.Lock()
	defer r.backlogMu.Unlock()
	last := &r.backlogRead[sideIndex(side)]
	if busy && time.Since(*last) < backlogRefreshEvery {
		return false
	}
	*last = time.Now()
	return true
}

// RetryPostponed makes every entry that waits out a back-off after a failed
// attempt (see DrainReport.Postponed) due now, on both sides, so that the
// next pass or Drain tries it at once; it returns how many there were.
// `pgshift repair` runs it before it drains: an operator asks for the
// repair now.
func (r *Repairer) RetryPostponed(ctx context.Context) (int64, error) {
	var n int64
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		m, err := ownSQL.RetryPostponedEntries(ctx, r.pool(side))
		if err != nil {
			return n, fmt.Errorf("dualwrite: retry postponed entries on %s: %w", side, err)
		}
		n += m
	}
	return n, nil
}
