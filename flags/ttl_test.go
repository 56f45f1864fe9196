package flags_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pgshift/pgshift/flags"
)

// flagServer stands for a flag service that evaluates elsewhere: the test
// sets the stage every user gets, makes it fail, and counts the
// evaluations. Its providers (one per evaluator, as OpenFeature binds a
// provider to one API) report no configuration changes by themselves, as
// the OFREP provider in front of a flag server does; announce sends the
// event a provider with events would send.
type flagServer struct {
	stage   atomic.Value // string
	failing atomic.Bool
	// errorReason makes it answer the default value with reason ERROR and
	// no error code, as some providers do.
	errorReason atomic.Bool
	calls       atomic.Int64
}

func newFlagServer(stage string) *flagServer {
	s := &flagServer{}
	s.stage.Store(stage)
	return s
}

func (s *flagServer) provider() *remoteProvider {
	return &remoteProvider{server: s, events: make(chan openfeature.Event, 1)}
}

type remoteProvider struct {
	openfeature.NoopProvider
	server *flagServer
	events chan openfeature.Event
}

var _ openfeature.EventHandler = (*remoteProvider)(nil)

func (p *remoteProvider) Metadata() openfeature.Metadata {
	return openfeature.Metadata{Name: "test remote provider"}
}

func (p *remoteProvider) StringEvaluation(_ context.Context, _ string, def string, _ openfeature.FlattenedContext) openfeature.StringResolutionDetail {
	s := p.server
	s.calls.Add(1)
	switch {
	case s.failing.Load():
		return openfeature.StringResolutionDetail{Value: def, ProviderResolutionDetail: openfeature.ProviderResolutionDetail{
			ResolutionError: openfeature.NewGeneralResolutionError("connection refused"),
			Reason:          openfeature.ErrorReason,
		}}
	case s.errorReason.Load():
		return openfeature.StringResolutionDetail{Value: def, ProviderResolutionDetail: openfeature.ProviderResolutionDetail{
			Reason: openfeature.ErrorReason,
		}}
	}
	v := s.stage.Load().(string)
	return openfeature.StringResolutionDetail{Value: v, ProviderResolutionDetail: openfeature.ProviderResolutionDetail{
		Reason: openfeature.StaticReason, Variant: v,
	}}
}

func (p *remoteProvider) EventChannel() <-chan openfeature.Event { return p.events }

// announce reports a configuration change and waits until ev has dropped
// its cached decisions.
func (p *remoteProvider) announce(t *testing.T, ev *flags.Evaluator) {
	t.Helper()
	changed := ev.Changed()
	p.events <- openfeature.Event{ProviderName: p.Metadata().Name, EventType: openfeature.ProviderConfigChange}
	select {
	case <-changed:
	case <-time.After(time.Minute):
		t.Fatal("the configuration change did not reach the evaluator within a minute")
	}
}

// startRemote starts an evaluator over p with logs and metrics captured.
func startRemote(t *testing.T, p openfeature.FeatureProvider, opts ...flags.Option) *bundle {
	t.Helper()
	b := &bundle{logs: &syncBuffer{}, reader: sdkmetric.NewManualReader()}
	opts = append([]flags.Option{
		flags.WithLogger(newLogger(b.logs)),
		flags.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(b.reader))),
	}, opts...)
	ev, err := flags.NewProviderEvaluator(t.Context(), p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	b.ev = ev
	return b
}

// warm waits until b serves a decision from its cache: the provider's ready
// event may drop the cache once just after start, which would add an
// evaluation to those a test counts.
func (b *bundle) warm(t *testing.T) {
	t.Helper()
	waitFor(t, "a cached decision", func() bool { return b.ev.Decide(user("warm-up", nil)).Origin == flags.OriginCached })
}

// TestCacheTTLBringsChanges: a provider that reports no changes changes
// its answer; an evaluator with a TTL follows within it, one without keeps
// serving its cached decision, as documented.
func TestCacheTTLBringsChanges(t *testing.T) {
	t.Parallel()
	srv := newFlagServer("dualwrite")
	withTTL := startRemote(t, srv.provider(), flags.WithCacheTTL(20*time.Millisecond))
	p := srv.provider()
	without := startRemote(t, p)
	without.warm(t)
	ctx := user("u", nil)
	for _, b := range []*bundle{withTTL, without} {
		if got := b.ev.Stage(ctx); got != flags.StageDualWrite {
			t.Fatalf("before the change: %v, want dualwrite", got)
		}
	}
	srv.stage.Store("shadow")
	took := waitFor(t, "the change to reach the evaluator with a TTL", func() bool { return withTTL.ev.Stage(ctx) == flags.StageShadow })
	t.Logf("the change arrived after %v with a TTL of 20ms", took)
	if d := without.ev.Decide(ctx); d.Stage != flags.StageDualWrite || d.Origin != flags.OriginCached {
		t.Errorf("without a TTL: %+v, want the cached dualwrite until the provider reports a change", d)
	}
	p.announce(t, without.ev)
	if d := without.ev.Decide(ctx); d.Stage != flags.StageShadow || d.Origin != flags.OriginEvaluated {
		t.Errorf("without a TTL, after the provider reported the change: %+v, want shadow, evaluated", d)
	}
}

// TestCacheTTLPacesFailures: with a TTL, a provider that fails is asked
// once per user and TTL, not once per call; every answer meanwhile is the
// last good decision, counted; the cause is logged once. A configuration
// change ends the pause at once.
func TestCacheTTLPacesFailures(t *testing.T) {
	t.Parallel()
	srv := newFlagServer("live")
	p := srv.provider()
	b := startRemote(t, p, flags.WithCacheTTL(time.Hour))
	b.warm(t)
	known, unknown := user("known", nil), user("unknown", nil)
	if got := b.ev.Stage(known); got != flags.StageLive {
		t.Fatalf("before the failure: %v, want live", got)
	}
	srv.failing.Store(true)
	p.announce(t, b.ev) // the cached decisions turn stale
	before := srv.calls.Load()
	const calls = 50
	for range calls {
		want := flags.Decision{Stage: flags.StageLive, Origin: flags.OriginLastGood, Reason: "STATIC", Variant: "live", Cause: flags.CauseProviderError}
		if d := b.ev.Decide(known); d != want {
			t.Fatalf("known user while the provider fails: %+v, want %+v", d, want)
		}
		if d := b.ev.Decide(unknown); d.Stage != flags.StageDualWrite || d.Origin != flags.OriginDefault {
			t.Fatalf("new user while the provider fails: %+v, want dualwrite (others are live: the automatic default writes both sides)", d)
		}
	}
	if n := srv.calls.Load() - before; n != 2 {
		t.Errorf("%d evaluations for 2 users over %d calls each within the TTL, want 2", n, calls)
	}
	if got := b.fallbacks(t); got[string(flags.CauseProviderError)] != 2*calls {
		t.Errorf("fallback counter %v, want provider_error=%d", got, 2*calls)
	}
	if n := b.logs.count("cannot decide", "cause=provider_error"); n != 1 {
		t.Errorf("%d log lines, want 1:\n%s", n, b.logs)
	}
	srv.failing.Store(false)
	p.announce(t, b.ev)
	if d := b.ev.Decide(known); d.Stage != flags.StageLive || d.Origin != flags.OriginEvaluated {
		t.Errorf("after the provider recovered and reported a change: %+v, want live, evaluated", d)
	}
}

// TestErrorReasonIsAFailure: a provider that answers its default value with
// reason ERROR and no error code has not decided; that default is neither
// taken nor cached.
func TestErrorReasonIsAFailure(t *testing.T) {
	t.Parallel()
	srv := newFlagServer("live")
	p := srv.provider()
	b := startRemote(t, p)
	b.warm(t)
	ctx := user("u", nil)
	if got := b.ev.Stage(ctx); got != flags.StageLive {
		t.Fatalf("before: %v, want live", got)
	}
	srv.errorReason.Store(true)
	p.announce(t, b.ev)
	for range 3 {
		if d := b.ev.Decide(ctx); d.Stage != flags.StageLive || d.Origin != flags.OriginLastGood || d.Cause != flags.CauseProviderError {
			t.Fatalf("reason ERROR without a code: %+v, want the last good live, cause provider_error", d)
		}
	}
	if n := b.logs.count("cannot decide", "reason ERROR"); n != 1 {
		t.Errorf("%d log lines naming reason ERROR, want 1:\n%s", n, b.logs)
	}
}

func TestNegativeCacheTTL(t *testing.T) {
	t.Parallel()
	_, err := flags.NewProviderEvaluator(t.Context(), newFlagServer("off").provider(), flags.WithCacheTTL(-time.Second))
	if err == nil {
		t.Fatal("WithCacheTTL(-1s) accepted")
	}
	t.Log(err)
}

// TestCacheTTLConcurrent decides for many users at once while the
// provider's answer and health change, for the race detector.
func TestCacheTTLConcurrent(t *testing.T) {
	t.Parallel()
	srv := newFlagServer("off")
	ev, err := flags.NewProviderEvaluator(t.Context(), srv.provider(),
		flags.WithCacheTTL(time.Millisecond), flags.WithCacheSize(8), flags.WithLogger(newLogger(&syncBuffer{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				s := ev.Stage(user(string(rune('a'+(g*7+i)%16)), nil))
				// dualwrite: the automatic default of a user never decided
				// while the provider fails, once off and live were given.
				if s != flags.StageOff && s != flags.StageLive && s != flags.StageDualWrite {
					t.Errorf("stage %v, want off, live or dualwrite", s)
					return
				}
			}
		})
	}
	for i := range 200 {
		srv.stage.Store([]string{"off", "live"}[i%2])
		srv.failing.Store(i%3 == 0)
		time.Sleep(100 * time.Microsecond)
	}
	wg.Wait()
}
