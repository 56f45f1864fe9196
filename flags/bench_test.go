package flags_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// BenchmarkStage compares a decision evaluated through OpenFeature and
// flagd (the cache off) with one served from the cache, for a user with two
// attributes matched by the cohort file's targeting.
func BenchmarkStage(b *testing.B) {
	for _, bc := range []struct {
		name     string
		opts     []flags.Option
		parallel bool
	}{
		{"uncached", []flags.Option{flags.WithoutCache()}, false},
		{"cached", nil, false},
		{"cached-parallel", nil, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ev, err := flags.NewFileEvaluator(b.Context(), cohorts,
				append(bc.opts, flags.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))...)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = ev.Close() })
			ctx := flags.WithUser(context.Background(), "789", map[string]any{"country": "IN", "plan": "pro"})
			if bc.opts == nil {
				// Let the provider's start-up events pass, then warm.
				for ev.Decide(ctx).Origin != flags.Cached {
					time.Sleep(time.Millisecond)
				}
			}
			if got := ev.Stage(ctx); got != flags.Shadow {
				b.Fatalf("stage %v, want shadow", got)
			}
			b.ReportAllocs()
			if bc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						ev.Stage(ctx)
					}
				})
				return
			}
			for b.Loop() {
				ev.Stage(ctx)
			}
		})
	}
}
