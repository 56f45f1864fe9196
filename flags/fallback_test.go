package flags_test

import (
	"fmt"
	"testing"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"
	"github.com/open-feature/go-sdk/openfeature/memprovider"

	"github.com/pgshift/pgshift/flags"
)

// TestFallbacks checks every way the provider can fail to decide: the
// answer is the default stage (no user here has a last good decision), the
// cause is counted once per call and logged once in all.
func TestFallbacks(t *testing.T) {
	t.Parallel()
	const booleans = `{"flags": {
		"write-to-new-db": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
		"read-from-new-db": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}`
	for _, tc := range []struct {
		name    string
		content string
		opts    []flags.Option
		cause   flags.Cause
	}{
		{"missing flag", staticFlag("live"), []flags.Option{flags.WithStageFlag("no-such-flag")}, flags.CauseFlagNotFound},
		{"disabled flag", `{"flags": {"pgshift-stage": {"state": "DISABLED", "variants": {"v": "live"}, "defaultVariant": "v"}}}`, nil, flags.CauseFlagDisabled},
		{"read without write", booleans, []flags.Option{flags.WithBooleanFlags("", "")}, flags.CauseReadWithoutWrite},
		{"missing boolean", staticFlag("live"), []flags.Option{flags.WithBooleanFlags("", "")}, flags.CauseFlagNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupContent(t, tc.content, append(tc.opts, flags.WithDefaultStage(flags.StageDualWrite))...)
			const calls = 20
			for i := range calls {
				d := b.ev.Decide(user([]string{"123", "9"}[i%2], nil))
				want := flags.Decision{Stage: flags.StageDualWrite, Origin: flags.OriginDefault, Cause: tc.cause}
				if d != want {
					t.Fatalf("call %d: %+v, want %+v", i, d, want)
				}
			}
			if n := b.logs.count("cannot decide", "cause="+string(tc.cause)); n != 1 {
				t.Errorf("%d log lines for cause %s, want 1:\n%s", n, tc.cause, b.logs)
			}
			if got := b.fallbacks(t); got[string(tc.cause)] != calls || len(got) != 1 {
				t.Errorf("fallback counter %v, want %s=%d", got, tc.cause, calls)
			}
		})
	}
}

// TestFallbacksOfOtherProviders checks the causes a flag file cannot have
// (NewFileEvaluator refuses a file whose stage flag can give a value that
// names no stage, or another type) with a provider that serves anything.
func TestFallbacksOfOtherProviders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		value any
		cause flags.Cause
	}{
		{"wrong type", true, flags.CauseTypeMismatch},
		{"unknown variant value", "banana", flags.CauseUnknownValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := memprovider.NewInMemoryProvider(map[string]memprovider.InMemoryFlag{
				flags.DefaultStageFlag: {Key: flags.DefaultStageFlag, State: memprovider.Enabled, DefaultVariant: "v", Variants: map[string]any{"v": tc.value}},
			})
			logs := &syncBuffer{}
			ev, err := flags.NewProviderEvaluator(t.Context(), p, flags.WithLogger(newLogger(logs)), flags.WithDefaultStage(flags.StageDualWrite))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ev.Close() })
			want := flags.Decision{Stage: flags.StageDualWrite, Origin: flags.OriginDefault, Cause: tc.cause}
			for i := range 5 {
				if d := ev.Decide(user("123", nil)); d != want {
					t.Fatalf("call %d: %+v, want %+v", i, d, want)
				}
			}
			if n := logs.count("cannot decide", "cause="+string(tc.cause)); n != 1 {
				t.Errorf("%d log lines for cause %s, want 1:\n%s", n, tc.cause, logs)
			}
		})
	}
}

func TestAutomaticDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		given []flags.Stage
		want  flags.Stage
	}{
		{nil, flags.StageOff},
		{[]flags.Stage{flags.StageOff}, flags.StageOff},
		{[]flags.Stage{flags.StageOff, flags.StageDualWrite}, flags.StageDualWrite},
		{[]flags.Stage{flags.StageLive}, flags.StageDualWrite},
		{[]flags.Stage{flags.StageRampdown, flags.StageComplete}, flags.StageDualWrite},
		{[]flags.Stage{flags.StageComplete}, flags.StageComplete},
	} {
		if got := flags.AutomaticDefault(tc.given); got != tc.want {
			t.Errorf("AutomaticDefault(%v) = %v, want %v", tc.given, got, tc.want)
		}
	}
}

// TestAutomaticDefaultFollowsTheFile: with the boolean scheme, a file whose
// write flag is true for some users gives dualwrite to a user the provider
// cannot decide for; WithDefaultStage overrides it.
func TestAutomaticDefaultFollowsTheFile(t *testing.T) {
	t.Parallel()
	b := setup(t, cohorts, flags.WithBooleanFlags("", ""))
	// Removing both flags makes every new user a fallback.
	writeFile(t, b.path, `{"flags": {"another-flag": {"state": "ENABLED", "variants": {"v": "x"}, "defaultVariant": "v"}}}`)
	n := 0
	waitFor(t, "the missing flags to be seen", func() bool {
		n++ // a key never decided before
		return b.ev.Decide(user(fmt.Sprint("new-", n), nil)).Origin == flags.OriginDefault
	})
	if d := b.ev.Decide(user("new2", nil)); d.Stage != flags.StageDualWrite {
		t.Errorf("new user: %+v, want dualwrite (the file wrote new for some)", d)
	}
	fixed := setupContent(t, staticFlag("live"), flags.WithDefaultStage(flags.StageOff))
	writeFile(t, fixed.path, `{"flags": {}}`)
	waitFor(t, "the missing flag to be seen", func() bool {
		n++
		return fixed.ev.Decide(user(fmt.Sprint("x-", n), nil)).Origin == flags.OriginDefault
	})
	if d := fixed.ev.Decide(user("y", nil)); d.Stage != flags.StageOff {
		t.Errorf("WithDefaultStage(off): %+v", d)
	}
}

func TestReadWithoutWriteOnlyByOption(t *testing.T) {
	t.Parallel()
	b := setupContent(t, `{"flags": {
		"write-to-new-db": {"state": "ENABLED", "variants": {"off": false}, "defaultVariant": "off"},
		"read-from-new-db": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}`,
		flags.WithBooleanFlags("", ""), flags.WithReadWithoutWrite(flags.StageComplete))
	if d := b.ev.Decide(user("1", nil)); d.Stage != flags.StageComplete || d.Origin != flags.OriginEvaluated {
		t.Errorf("write=false read=true with WithReadWithoutWrite(Complete): %+v", d)
	}
	if got := b.fallbacks(t); len(got) != 0 {
		t.Errorf("fallbacks %v, want none", got)
	}
}

// TestLastGoodDecision removes the stage flag while the evaluator runs: a
// user decided before keeps that decision; a new user gets the automatic
// default: the last file with the flag put users in live, which writes both
// sides, so dualwrite (off would write old only).
func TestLastGoodDecision(t *testing.T) {
	t.Parallel()
	b := setupContent(t, staticFlag("live"))
	if got := b.ev.Stage(user("known", nil)); got != flags.StageLive {
		t.Fatalf("before: %v, want live", got)
	}
	writeFile(t, b.path, `{"flags": {"another-flag": {"state": "ENABLED", "variants": {"v": "x"}, "defaultVariant": "v"}}}`)
	waitFor(t, "the missing flag to be seen", func() bool {
		return b.ev.Decide(user("known", nil)).Origin == flags.OriginLastGood
	})
	want := flags.Decision{Stage: flags.StageLive, Origin: flags.OriginLastGood, Reason: "STATIC", Variant: "v", Cause: flags.CauseFlagNotFound}
	if d := b.ev.Decide(user("known", nil)); d != want {
		t.Errorf("known user: %+v, want %+v", d, want)
	}
	if d := b.ev.Decide(user("new", nil)); d.Stage != flags.StageDualWrite || d.Origin != flags.OriginDefault {
		t.Errorf("new user: %+v, want dualwrite by the automatic default", d)
	}
}

// TestProviderNotReady decides while the provider is still starting (its
// Init has not returned), as when a flag service is slow to answer.
func TestProviderNotReady(t *testing.T) {
	t.Parallel()
	p := &startingProvider{release: make(chan struct{})}
	t.Cleanup(func() { close(p.release) })
	api := isolated.NewAPI()
	t.Cleanup(func() { _ = api.Shutdown(t.Context()) })
	if err := api.SetProvider(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	b := &bundle{logs: &syncBuffer{}}
	ev, err := flags.NewEvaluator(api.NewClient(), flags.WithLogger(newLogger(b.logs)), flags.WithDefaultStage(flags.StageShadow))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	for range 5 {
		want := flags.Decision{Stage: flags.StageShadow, Origin: flags.OriginDefault, Cause: flags.CauseProviderNotReady}
		if d := ev.Decide(user("123", nil)); d != want {
			t.Fatalf("%+v, want %+v", d, want)
		}
	}
	if n := b.logs.count("cause=provider_not_ready"); n != 1 {
		t.Errorf("%d log lines, want 1:\n%s", n, b.logs)
	}
}

// startingProvider is a provider whose Init waits for release: until then
// OpenFeature reports it not ready and evaluates nothing with it.
type startingProvider struct {
	openfeature.NoopProvider
	release chan struct{}
}

func (p *startingProvider) Init(openfeature.EvaluationContext) error {
	<-p.release
	return nil
}

func (p *startingProvider) Shutdown() {}
