package providers_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/flagtest"
)

// TestCohorts runs the reference cohorts through each provider in both
// schemes, beside the flagd file they are written after: testers and
// attribute rules decide the same everywhere. Percentage users are left to
// TestRolloutPercentage (go-feature-flag buckets other keys than flagd).
func TestCohorts(t *testing.T) {
	t.Parallel()
	for _, src := range append([]source{flagdFile}, providers...) {
		for _, sc := range flagtest.Schemes() {
			t.Run(src.name+"/"+sc.Name, func(t *testing.T) {
				t.Parallel()
				o, opts := observe()
				ev := src.start(t, src.cohorts, append(opts, sc.Opt)...)
				for _, tc := range flagtest.RuleCases(sc.Shadow) {
					d := ev.Decide(user(tc.Key, tc.Attrs))
					if d.Stage != tc.Want || d.Origin != flags.OriginEvaluated {
						t.Errorf("user %q %v: %+v, want %v, evaluated", tc.Key, tc.Attrs, d, tc.Want)
					}
				}
				for _, tc := range []struct {
					key   string
					attrs map[string]any
				}{
					{"1", map[string]any{"country": "US", "plan": "free"}},
					{"1", map[string]any{"country": "DE", "plan": "pro"}},
					{"4", nil},
				} {
					// Outside every rule: the percentage decides.
					if d := ev.Decide(user(tc.key, tc.attrs)); d.Stage != flags.StageOff && d.Stage != flags.StageDualWrite {
						t.Errorf("user %q %v: %+v, want off or dualwrite", tc.key, tc.attrs, d)
					}
				}
				if got := o.fallbacks(t); len(got) != 0 {
					t.Errorf("fallbacks %v, want none", got)
				}

				// No routing key: flagd's default rule decides; go-feature-flag
				// needs a targeting key, so it is the automatic default stage:
				// dualwrite, as the users above were given stages that write
				// new and stages that write old.
				d := ev.Decide(user("", nil))
				want := flags.Decision{Stage: flags.StageOff, Origin: flags.OriginEvaluated}
				if src.needsKey {
					want = flags.Decision{Stage: flags.StageDualWrite, Origin: flags.OriginDefault, Cause: flags.CauseProviderError}
				}
				if d.Stage != want.Stage || d.Origin != want.Origin || d.Cause != want.Cause {
					t.Errorf("no routing key: %+v, want %+v", d, want)
				}
			})
		}
	}
}

// TestRolloutPercentage checks each provider's 10% rollout over 10,000
// keys to within one percentage point (the bucketing hash is
// deterministic, so this does not flake), and that the provider answers
// each key the same when asked again (the cache is off: both passes reach
// the provider, the relay proxy's over HTTP).
func TestRolloutPercentage(t *testing.T) {
	t.Parallel()
	const n = 10_000
	for _, src := range providers {
		for _, sc := range flagtest.Schemes() {
			t.Run(src.name+"/"+sc.Name, func(t *testing.T) {
				t.Parallel()
				o, opts := observe()
				ev := src.start(t, src.cohorts, append(opts, sc.Opt, flags.WithoutCache())...)
				first := decideAll(t, ev, n)
				dual := 0
				for i, s := range first {
					switch s {
					case flags.StageDualWrite:
						dual++
					case flags.StageOff:
					default:
						t.Fatalf("user-%d: stage %v, want dualwrite or off", i, s)
					}
				}
				for i, s := range decideAll(t, ev, n) {
					if s != first[i] {
						t.Fatalf("user-%d: stage %v, then %v", i, first[i], s)
					}
				}
				pct := 100 * float64(dual) / n
				t.Logf("dualwrite: %d of %d keys (%.2f%%)", dual, n, pct)
				if pct < 9 || pct > 11 {
					t.Errorf("dualwrite for %.2f%% of keys, want 10%% ± 1", pct)
				}
				if got := o.fallbacks(t); len(got) != 0 {
					t.Errorf("fallbacks %v, want none", got)
				}
			})
		}
	}
}

// decideAll decides for users user-0 ... user-(n-1), outside every rule,
// on a few goroutines (an evaluation through the relay proxy is an HTTP
// request).
func decideAll(t *testing.T, ev *flags.Evaluator, n int) []flags.Stage {
	t.Helper()
	out := make([]flags.Stage, n)
	const workers = 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				out[i] = ev.Stage(user(fmt.Sprintf("user-%d", i), map[string]any{"country": "DE", "plan": "free"}))
			}
		})
	}
	wg.Wait()
	return out
}
