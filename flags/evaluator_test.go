package flags_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/memprovider"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/flagtest"
)

func TestCohortsFromOneFlagdFile(t *testing.T) {
	t.Parallel()
	for _, scheme := range flagtest.Schemes() {
		t.Run(scheme.Name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, cohorts, scheme.Opt)
			for _, tc := range append(flagtest.RuleCases(scheme.Shadow), []flagtest.Case{
				{Key: "1", Attrs: map[string]any{"country": "US", "plan": "free"}, Want: flags.StageOff},
				{Key: "1", Attrs: map[string]any{"country": "DE", "plan": "pro"}, Want: flags.StageOff},
				{Key: "2", Attrs: nil, Want: flags.StageDualWrite}, // in the 10% rollout
				{Key: "3", Attrs: map[string]any{"country": "FR"}, Want: flags.StageDualWrite},
				{Key: "4", Attrs: nil, Want: flags.StageOff},
				{Key: "", Attrs: nil, Want: flags.StageOff}, // no routing key: the flag's default
			}...) {
				if got := b.ev.Stage(user(tc.Key, tc.Attrs)); got != tc.Want {
					t.Errorf("user %q %v: stage %v, want %v", tc.Key, tc.Attrs, got, tc.Want)
				}
			}
			if got := b.fallbacks(t); len(got) != 0 {
				t.Errorf("fallbacks %v, want none", got)
			}
		})
	}
}

// TestRolloutPercentage checks the 10% fractional rollout over 10,000 keys
// to within one percentage point (the bucketing hash is deterministic, so
// this does not flake; a binomial draw would be off by more than a point
// one time in a thousand), and that a key's bucket does not change between
// evaluations or evaluators.
func TestRolloutPercentage(t *testing.T) {
	t.Parallel()
	const n = 10_000
	cached := setup(t, cohorts)
	uncached := setup(t, cohorts, flags.WithoutCache())
	dual := 0
	for i := range n {
		ctx := user(fmt.Sprintf("user-%d", i), map[string]any{"country": "DE", "plan": "free"})
		s := cached.ev.Stage(ctx)
		switch s {
		case flags.StageDualWrite:
			dual++
		case flags.StageOff:
		default:
			t.Fatalf("user-%d: stage %v, want dualwrite or off", i, s)
		}
		if again := uncached.ev.Stage(ctx); again != s {
			t.Fatalf("user-%d: stage %v, then %v from another evaluator", i, s, again)
		}
		if again := cached.ev.Stage(ctx); again != s {
			t.Fatalf("user-%d: stage %v, then %v", i, s, again)
		}
	}
	pct := 100 * float64(dual) / n
	t.Logf("dualwrite: %d of %d keys (%.2f%%)", dual, n, pct)
	if pct < 9 || pct > 11 {
		t.Errorf("dualwrite for %.2f%% of keys, want 10%% ± 1", pct)
	}
}

func TestDecideOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t, cohorts)
	ctx := user("123", nil)
	first := b.ev.Decide(ctx)
	if first.Stage != flags.StageLive || first.Reason != "TARGETING_MATCH" || first.Variant != "live" {
		t.Fatalf("first decision %+v, want live by TARGETING_MATCH, variant live", first)
	}
	// The provider's ready event may drop the cache once just after start.
	waitFor(t, "a cached decision", func() bool { return b.ev.Decide(ctx).Origin == flags.OriginCached })
	if d := b.ev.Decide(ctx); d.Stage != flags.StageLive || d.Reason != first.Reason || d.Cause != "" {
		t.Errorf("cached decision %+v, want %+v from the cache", d, first)
	}
	if d := setup(t, cohorts, flags.WithoutCache()).ev.Decide(ctx); d.Origin != flags.OriginEvaluated {
		t.Errorf("WithoutCache: origin %v, want evaluated", d.Origin)
	}
}

// TestCacheKeyIsUserAndAttributes checks that users who differ only in an
// attribute get their own decisions, and that the same user reached through
// differently built contexts shares one.
func TestCacheKeyIsUserAndAttributes(t *testing.T) {
	t.Parallel()
	b := setup(t, cohorts)
	pro := map[string]any{"country": "IN", "plan": "pro"}
	free := map[string]any{"plan": "free", "country": "IN"}
	for range 3 {
		if got := b.ev.Stage(user("789", pro)); got != flags.StageShadow {
			t.Fatalf("789 pro: %v, want shadow", got)
		}
		if got := b.ev.Stage(user("789", free)); got != flags.StageOff {
			t.Fatalf("789 free: %v, want off", got)
		}
	}
	// Set by other middleware straight into OpenFeature's transaction context.
	ctx := openfeature.WithTransactionContext(context.Background(),
		openfeature.NewEvaluationContext("789", map[string]any{"plan": "pro", "country": "IN"}))
	if got := b.ev.Stage(ctx); got != flags.StageShadow {
		t.Errorf("789 pro via openfeature.WithTransactionContext: %v, want shadow", got)
	}
}

func TestEvaluatorsAreIsolated(t *testing.T) {
	t.Parallel()
	live := setupContent(t, staticFlag("live"))
	off := setupContent(t, staticFlag("off"))
	for range 3 {
		if got := live.ev.Stage(user("u", nil)); got != flags.StageLive {
			t.Errorf("first evaluator: %v, want live", got)
		}
		if got := off.ev.Stage(user("u", nil)); got != flags.StageOff {
			t.Errorf("second evaluator: %v, want off", got)
		}
	}
}

func TestStatic(t *testing.T) {
	t.Parallel()
	src := flags.Static(flags.StageRampdown)
	if got := src.Stage(user("123", nil)); got != flags.StageRampdown {
		t.Errorf("Static(Rampdown).Stage: %v", got)
	}
	var _ flags.Source = (*flags.Evaluator)(nil)
}

// TestNewEvaluatorOverAnyProvider plugs an OpenFeature provider other than
// flagd (the SDK's in-memory one) into NewEvaluator unchanged.
func TestNewEvaluatorOverAnyProvider(t *testing.T) {
	t.Parallel()
	byUser := func(_ memprovider.InMemoryFlag, ec openfeature.FlattenedContext) (any, openfeature.ProviderResolutionDetail) {
		if ec[openfeature.TargetingKey] == "123" {
			return "live", openfeature.ProviderResolutionDetail{Reason: openfeature.TargetingMatchReason, Variant: "live"}
		}
		return "dualwrite", openfeature.ProviderResolutionDetail{Reason: openfeature.DefaultReason, Variant: "dualwrite"}
	}
	p := memprovider.NewInMemoryProvider(map[string]memprovider.InMemoryFlag{
		flags.DefaultStageFlag: {
			Key:              flags.DefaultStageFlag,
			State:            memprovider.Enabled,
			DefaultVariant:   "dualwrite",
			Variants:         map[string]any{"dualwrite": "dualwrite", "live": "live"},
			ContextEvaluator: &byUser,
		},
	})
	ev, err := flags.NewProviderEvaluator(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	if got := ev.Stage(user("123", nil)); got != flags.StageLive {
		t.Errorf("123: %v, want live", got)
	}
	if got := ev.Stage(user("9", nil)); got != flags.StageDualWrite {
		t.Errorf("9: %v, want dualwrite", got)
	}
}

// staticFlag is a flag file whose stage flag answers value to everyone.
func staticFlag(value string) string {
	return fmt.Sprintf(`{"flags": {"pgshift-stage": {"state": "ENABLED",
		"variants": {"v": %q}, "defaultVariant": "v"}}}`, value)
}
