package dualwrite

import (
	"context"
	"sync"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// deleter deletes confirmed repair log entries in batches, off the callers'
// path. An entry whose delete is lost (the process dies first) is copied once
// more by the repair worker, which is harmless.
type deleter struct {
	f       *Facade
	mu      sync.Mutex
	onOld   []int64 // confirmed entries of old's log
	onNew   []int64 // confirmed entries of new's log
	wake    chan struct{}
	flushMu sync.Mutex
}

func newDeleter(f *Facade) *deleter {
	return &deleter{f: f, wake: make(chan struct{}, 1)}
}

// add queues the entries of side's log for deletion.
func (d *deleter) add(side flags.Side, ids []int64) {
	if len(ids) == 0 {
		return
	}
	d.mu.Lock()
	if side == flags.SideNew {
		d.onNew = append(d.onNew, ids...)
	} else {
		d.onOld = append(d.onOld, ids...)
	}
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

// flush deletes every queued entry now.
func (d *deleter) flush() {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	d.mu.Lock()
	onOld, onNew := d.onOld, d.onNew
	d.onOld, d.onNew = nil, nil
	d.mu.Unlock()
	d.delete(flags.SideOld, onOld)
	d.delete(flags.SideNew, onNew)
}

func (d *deleter) delete(side flags.Side, ids []int64) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.f.cfg.OtherTimeout)
	defer cancel()
	if err := ownSQL.DeleteRepairEntries(ctx, d.f.pool(side), ids); err != nil {
		d.f.log.Debug("deleting confirmed repair log entries failed; the repair worker will re-copy them",
			"side", side, "entries", len(ids), "err", err)
	}
}
