package providers_test

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// staticStage is a go-feature-flag file whose stage flag answers stage to
// everyone.
func staticStage(stage string) string {
	return fmt.Sprintf("pgshift-stage:\n  variations:\n    v: %q\n  defaultRule:\n    variation: v\n", stage)
}

// changeTTL is the cache lifetime of the change tests: a change reaches
// decisions within it plus the provider's polling interval (one second).
const changeTTL = 100 * time.Millisecond

func quiet() flags.Option { return flags.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))) }

// TestChangeReachesDecisions changes the flags while two evaluators (two
// application servers) decide: with a cache lifetime both follow within
// about the polling interval plus the TTL; an evaluator without one keeps
// serving its cached decision, as flags.WithCacheTTL documents for
// providers that report no changes.
func TestChangeReachesDecisions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// servers returns two evaluators with a TTL and one without over
		// the go-feature-flag file at path.
		servers func(t *testing.T, path string) (a, b, noTTL *flags.Evaluator)
	}{
		{inProcess.name, func(t *testing.T, path string) (a, b, noTTL *flags.Evaluator) {
			return startInProcess(t, path, quiet(), flags.WithCacheTTL(changeTTL)),
				startInProcess(t, path, quiet(), flags.WithCacheTTL(changeTTL)),
				startInProcess(t, path, quiet(), flags.WithCacheTTL(0))
		}},
		{overOFREP.name + ", one relay proxy for all", func(t *testing.T, path string) (a, b, noTTL *flags.Evaluator) {
			rp := startRelay(t, path)
			return overRelay(t, rp, quiet(), flags.WithCacheTTL(changeTTL)),
				overRelay(t, rp, quiet(), flags.WithCacheTTL(changeTTL)),
				overRelay(t, rp, quiet(), flags.WithCacheTTL(0))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "flags.goff.yaml")
			replaceFile(t, path, staticStage("dualwrite"))
			a, b, noTTL := tc.servers(t, path)
			ctx := user("worker", nil)
			for _, ev := range []*flags.Evaluator{a, b, noTTL} {
				if got := ev.Stage(ctx); got != flags.StageDualWrite {
					t.Fatalf("before the change: %v, want dualwrite", got)
				}
			}

			replaceFile(t, path, staticStage("shadow"))
			changed := time.Now()
			for i, ev := range []*flags.Evaluator{a, b} {
				waitFor(t, "the change to reach the decisions", func() bool { return ev.Stage(ctx) == flags.StageShadow })
				t.Logf("server %d: shadow %v after the change (polling 1s, TTL %v)", i+1, time.Since(changed).Round(time.Millisecond), changeTTL)
			}
			if d := noTTL.Decide(ctx); d.Stage != flags.StageDualWrite || d.Origin != flags.OriginCached {
				t.Errorf("without a TTL: %+v, want the cached dualwrite", d)
			}
		})
	}
}
