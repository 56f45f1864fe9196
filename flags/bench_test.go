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
// flagd (the cache off) with one served from the cache (cached-ttl: with
// WithCacheTTL, which reads the clock on every hit), for a user with two
// attributes matched by the cohort file's targeting.
//
// The evaluators start before the sub-benchmarks: flagd's in-process
// service prints start and stop lines that would otherwise land inside the
// result lines.
func BenchmarkStage(b *testing.B) {
	ctx := flags.WithUser(context.Background(), "789", map[string]any{"country": "IN", "plan": "pro"})
	quiet := flags.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := func(opts ...flags.Option) *flags.Evaluator {
		ev, err := flags.NewFileEvaluator(b.Context(), cohorts, append(opts, quiet)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ev.Close() })
		if got := ev.Stage(ctx); got != flags.StageShadow {
			b.Fatalf("stage %v, want shadow", got)
		}
		return ev
	}
	uncached, cached, ttl := start(flags.WithoutCache()), start(), start(flags.WithCacheTTL(time.Hour))
	// Let the provider's start-up events pass, then warm.
	for _, ev := range []*flags.Evaluator{cached, ttl} {
		for ev.Decide(ctx).Origin != flags.OriginCached {
			time.Sleep(time.Millisecond)
		}
	}

	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			uncached.Stage(ctx)
		}
	})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cached.Stage(ctx)
		}
	})
	b.Run("cached-ttl", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ttl.Stage(ctx)
		}
	})
	b.Run("cached-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				cached.Stage(ctx)
			}
		})
	})
}
