package providers_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// BenchmarkDecision measures one stage decision through each provider
// beside flagd's file evaluator, in one run, for a user with two
// attributes matched by the cohorts' attribute rule (789, IN, pro: shadow):
//
//   - uncached: every call reaches the provider (OpenFeature and the
//     provider's rules engine; over OFREP an HTTP request to the relay
//     proxy on loopback, which evaluates);
//   - cached: served from the decision cache, which flagd's file keeps
//     until the file changes;
//   - cached-ttl: served from the cache with a lifetime (flags.WithCacheTTL),
//     which go-feature-flag in process and OFREP need; it reads the clock on
//     every hit.
func BenchmarkDecision(b *testing.B) {
	ctx := flags.WithUser(context.Background(), "789", map[string]any{"country": "IN", "plan": "pro"})
	for _, src := range []struct {
		name  string
		start func(opts ...flags.Option) *flags.Evaluator
		// events: the provider reports configuration changes, so its
		// cache needs no lifetime.
		events bool
	}{
		{"flagd-file", func(opts ...flags.Option) *flags.Evaluator { return flagdFile.start(b, flagdCohorts, opts...) }, true},
		{"goff-in-process", func(opts ...flags.Option) *flags.Evaluator { return inProcess.start(b, goffCohorts, opts...) }, false},
		{"ofrep-relayproxy", func(opts ...flags.Option) *flags.Evaluator { return overRelay(b, sharedRelay, opts...) }, false},
	} {
		variants := []struct {
			name string
			ev   *flags.Evaluator
		}{
			{"uncached", src.start(quiet(), flags.WithoutCache())},
			{"cached-ttl", src.start(quiet(), flags.WithCacheTTL(time.Hour))},
		}
		if src.events {
			variants = append(variants, struct {
				name string
				ev   *flags.Evaluator
			}{"cached", src.start(quiet(), flags.WithCacheTTL(0))})
		}
		for _, v := range variants {
			if d := v.ev.Decide(ctx); d.Stage != flags.StageShadow {
				b.Fatalf("%s/%s: %+v, want shadow", src.name, v.name, d)
			}
			// Let the provider's start-up events pass, then warm.
			for v.name != "uncached" && v.ev.Decide(ctx).Origin != flags.OriginCached {
				time.Sleep(time.Millisecond)
			}
			b.Run(src.name+"/"+v.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					v.ev.Stage(ctx)
				}
			})
		}
	}
}
