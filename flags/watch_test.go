package flags_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// next receives from ch, failing the test after a minute.
func next(t *testing.T, ch <-chan flags.Stage) flags.Stage {
	t.Helper()
	select {
	case st, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return st
	case <-time.After(time.Minute):
		t.Fatal("no stage within a minute")
		return 0
	}
}

// Watch on a file evaluator reports a user's stage at once, then the new
// stage when the flag file changes, without waiting for its interval (an
// hour here), and closes when its context ends.
func TestWatchFollowsFileChanges(t *testing.T) {
	t.Parallel()
	b := setupContent(t, staticFlag("dualwrite"))
	ctx, cancel := context.WithCancel(user("worker", nil))
	ch := flags.Watch(ctx, b.ev, time.Hour)
	if st := next(t, ch); st != flags.StageDualWrite {
		t.Fatalf("first stage %v, want dualwrite", st)
	}
	writeFile(t, b.path, staticFlag("shadow"))
	if st := next(t, ch); st != flags.StageShadow {
		t.Fatalf("after the edit: %v, want shadow", st)
	}
	cancel()
	for range ch {
	}
}

// staticSource is a Source whose stage the test sets.
type staticSource struct{ v atomic.Uint32 }

func (s *staticSource) Stage(context.Context) flags.Stage { return flags.Stage(s.v.Load()) }

// Watch on a Source that reports no changes asks it every interval and
// sends only changes.
func TestWatchPollsOtherSources(t *testing.T) {
	t.Parallel()
	var src staticSource
	src.v.Store(uint32(flags.StageOff))
	ch := flags.Watch(t.Context(), &src, 10*time.Millisecond)
	if st := next(t, ch); st != flags.StageOff {
		t.Fatalf("first stage %v, want off", st)
	}
	src.v.Store(uint32(flags.StageLive))
	if st := next(t, ch); st != flags.StageLive {
		t.Fatalf("after the change: %v, want live", st)
	}
	select {
	case st := <-ch:
		t.Fatalf("stage %v sent although nothing changed", st)
	case <-time.After(100 * time.Millisecond):
	}
}
