package flags

import (
	"context"
	"sync"
	"time"
)

// changes hands out a channel that is closed at the next configuration
// change, then a fresh one.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

func newChanges() *changes { return &changes{ch: make(chan struct{})} }

func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

func (c *changes) signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}

// Changed returns a channel that is closed when the provider next reports a
// configuration change (or becomes ready again); call it again for the
// change after that. Watch uses it.
func (e *Evaluator) Changed() <-chan struct{} { return e.changed.next() }

// DefaultWatchInterval is how often Watch asks a Source that cannot report
// configuration changes (one that is not an *Evaluator) for the stage.
const DefaultWatchInterval = time.Second

// Watch follows the stage of the user in ctx (WithUser; a context with no
// user follows the global stage, the flag's default rules) for work that is
// not a request: a background worker, a queue consumer, a LISTEN loop. The
// returned channel receives the current stage at once, then each new stage
// when it changes; it is closed when ctx is done. An *Evaluator is asked
// again at each configuration change its provider reports, and every
// interval (DefaultWatchInterval when zero) for providers that report none;
// any other Source every interval. A receiver that falls behind gets the
// latest stage, not every intermediate one.
func Watch(ctx context.Context, src Source, interval time.Duration) <-chan Stage {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	out := make(chan Stage, 1)
	ev, _ := src.(*Evaluator)
	go func() {
		defer close(out)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		last, sent := Stage(0), false
		for {
			var changed <-chan struct{}
			if ev != nil {
				changed = ev.Changed()
			}
			if st := src.Stage(ctx); !sent || st != last {
				select {
				case <-out: // drop a stage nobody read: only the latest matters
				default:
				}
				out <- st
				last, sent = st, true
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-tick.C:
			}
		}
	}()
	return out
}
