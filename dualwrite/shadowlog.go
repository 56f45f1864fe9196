package dualwrite

import (
	"context"
	"sync"
	"time"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// shadowFlushInterval is how often the facade adds its shadow-read counts
// to pgshift.shadow_reads on new.
const shadowFlushInterval = 10 * time.Second

// shadowLog counts shadow reads and mismatches per operation until they are
// written to pgshift.shadow_reads on new, where the cutover gate into live
// (pgshift preflight) reads them: the facade's metrics live in one process,
// the gate needs every process's.
type shadowLog struct {
	mu     sync.Mutex
	counts map[string]*shadowCount
}

type shadowCount struct{ reads, mismatches int64 }

func newShadowLog() *shadowLog { return &shadowLog{counts: map[string]*shadowCount{}} }

func (l *shadowLog) add(op string, reads, mismatches int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts[op]
	if c == nil {
		c = &shadowCount{}
		l.counts[op] = c
	}
	c.reads += reads
	c.mismatches += mismatches
}

// flush writes the counts to new; counts it could not write stay for the
// next flush.
func (l *shadowLog) flush(ctx context.Context, f *Facade) {
	l.mu.Lock()
	counts := l.counts
	l.counts = map[string]*shadowCount{}
	l.mu.Unlock()
	for op, c := range counts {
		err := ownSQL.RecordShadowReads(ctx, f.pool(flags.SideNew), pgshiftdb.RecordShadowReadsParams{
			Op: op, Reads: c.reads, Mismatches: c.mismatches,
		})
		if err != nil {
			f.log.Debug("recording shadow reads on new failed; kept for the next try", "op", op, "err", err)
			l.add(op, c.reads, c.mismatches)
		}
	}
}

// run flushes every shadowFlushInterval until ctx is done, then once more.
func (l *shadowLog) run(ctx context.Context, f *Facade) {
	tick := time.NewTicker(shadowFlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.OtherTimeout)
			l.flush(fctx, f)
			cancel()
			return
		case <-tick.C:
			fctx, cancel := context.WithTimeout(ctx, f.cfg.OtherTimeout)
			l.flush(fctx, f)
			cancel()
		}
	}
}
