package providers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/flagtest"
)

// failTTL is the cache lifetime of the failure tests: how long a
// decision, and a failure, is trusted before the provider is asked again.
const failTTL = 50 * time.Millisecond

// TestFailureKeepsLastGood breaks each provider while the application
// decides (the relay proxy stops; the flags vanish from go-feature-flag's
// file), then mends it. Meanwhile every user keeps the last good decision,
// a user never seen gets the default stage, the cause is logged once and
// every fallback answer is counted; once mended, decisions come from the
// provider again.
func TestFailureKeepsLastGood(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cause flags.Cause
		// start returns an evaluator over the reference cohorts with opts,
		// and how to break and mend its provider.
		start func(t *testing.T, opts ...flags.Option) (ev *flags.Evaluator, breakIt, mend func())
	}{
		{"relay proxy stopped", flags.CauseProviderError, func(t *testing.T, opts ...flags.Option) (*flags.Evaluator, func(), func()) {
			rp := startRelay(t, goffCohorts)
			return overRelay(t, rp, opts...),
				func() {
					if err := rp.Stop(); err != nil {
						t.Fatal(err)
					}
				},
				func() {
					if err := rp.Restart(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
		}},
		{"go-feature-flag in process, flags removed", flags.CauseFlagNotFound, func(t *testing.T, opts ...flags.Option) (*flags.Evaluator, func(), func()) {
			path := copyFile(t, goffCohorts)
			good := readFile(t, path)
			return startInProcess(t, path, opts...),
				func() {
					replaceFile(t, path, "something-else:\n  variations:\n    v: 1\n  defaultRule:\n    variation: v\n")
				},
				func() { replaceFile(t, path, good) }
		}},
	} {
		for _, sc := range flagtest.Schemes() {
			t.Run(tc.name+"/"+sc.Name, func(t *testing.T) {
				t.Parallel()
				o, opts := observe()
				ev, breakIt, mend := tc.start(t, append(opts, sc.Opt, flags.WithCacheTTL(failTTL), flags.WithDefaultStage(flags.StageOff))...)
				known := knownUsers()
				want := make([]flags.Stage, len(known))
				for i, ctx := range known {
					want[i] = ev.Stage(ctx)
				}

				breakIt()
				fellBack := 0 // fallback answers seen, to compare with the counter
				decide := func(ctx context.Context) flags.Decision {
					d := ev.Decide(ctx)
					if d.Origin == flags.OriginLastGood || d.Origin == flags.OriginDefault {
						fellBack++
					}
					return d
				}
				// Each user's cached decision turns stale a TTL after it was
				// made; then the provider is asked, and fails.
				waitFor(t, "the provider to fail for every user", func() bool {
					failed := 0
					for _, ctx := range known {
						if decide(ctx).Origin == flags.OriginLastGood {
							failed++
						}
					}
					return failed == len(known)
				})
				for i, ctx := range known {
					for range 3 {
						if d := decide(ctx); d.Stage != want[i] || d.Origin != flags.OriginLastGood || d.Cause != tc.cause {
							t.Fatalf("%s while the provider fails: %+v, want the last good %v, cause %s", flags.RoutingKey(ctx), d, want[i], tc.cause)
						}
					}
				}
				if d := decide(user("never-seen", nil)); d.Stage != flags.StageOff || d.Origin != flags.OriginDefault || d.Cause != tc.cause {
					t.Errorf("a new user while the provider fails: %+v, want the default off, cause %s", d, tc.cause)
				}
				warned := o.logs.fallbackLines()
				checkWarnings(t, warned, tc.cause)
				if got := o.fallbacks(t); got[tc.cause] != int64(fellBack) || len(got) != 1 {
					t.Errorf("fallback counter %v, want %s=%d (the fallback answers given)", got, tc.cause, fellBack)
				}

				// A failure is trusted for the TTL too: each user asks again
				// a TTL after its last failed request.
				mend()
				waitFor(t, "decisions from the provider again for every user", func() bool {
					answered := 0
					for _, ctx := range known {
						if d := decide(ctx); d.Origin == flags.OriginEvaluated || d.Origin == flags.OriginCached {
							answered++
						}
					}
					return answered == len(known)
				})
				for i, ctx := range known {
					if d := decide(ctx); d.Stage != want[i] || (d.Origin != flags.OriginEvaluated && d.Origin != flags.OriginCached) {
						t.Errorf("%s after the provider recovered: %+v, want %v from the provider", flags.RoutingKey(ctx), d, want[i])
					}
				}
				if got := o.logs.fallbackLines(); !slices.Equal(got, warned) {
					t.Errorf("fallback warnings %q after the provider recovered, want only the earlier %q", got, warned)
				}
			})
		}
	}
}

// checkWarnings checks that the fallback warnings logged are for cause,
// each flag at most once. A flag is one of the scheme's: in the boolean
// scheme the write flag may still be found while the read flag is not yet
// (go-feature-flag reloads its file between the two evaluations), which
// logs both.
func checkWarnings(t *testing.T, warned []string, cause flags.Cause) {
	t.Helper()
	if len(warned) == 0 {
		t.Errorf("no fallback warning, want one for %s", cause)
	}
	seen := map[string]bool{}
	for _, w := range warned {
		c, flag, _ := strings.Cut(w, " ")
		if flags.Cause(c) != cause || seen[flag] ||
			!slices.Contains([]string{flags.DefaultStageFlag, flags.DefaultWriteFlag, flags.DefaultReadFlag}, flag) {
			t.Errorf("fallback warnings %q, want each for %s and a flag of the scheme, once", warned, cause)
			return
		}
		seen[flag] = true
	}
}

// knownUsers are users of every cohort: testers, the attribute rule, and
// keys the percentage decides.
func knownUsers() []context.Context {
	users := []context.Context{
		user("123", nil),
		user("456", nil),
		user("789", map[string]any{"country": "IN", "plan": "pro"}),
		user("5", map[string]any{"country": "US", "plan": "pro"}),
	}
	for i := range 20 {
		users = append(users, user(fmt.Sprintf("user-%d", i), map[string]any{"country": "DE", "plan": "free"}))
	}
	return users
}
