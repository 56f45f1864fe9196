package flags

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Origin says where a Decision came from.
type Origin uint8

const (
	// OriginEvaluated means the provider decided during this call.
	OriginEvaluated Origin = iota
	// OriginCached means the provider decided earlier, under the current
	// configuration.
	OriginCached
	// OriginLastGood means the provider could not decide (see Decision.Cause);
	// this is the last decision it made for the user.
	OriginLastGood
	// OriginDefault means the provider could not decide and has never decided for
	// the user; this is the default stage (WithDefaultStage, else
	// AutomaticDefault of what the flags give others).
	OriginDefault
)

var originNames = [...]string{"evaluated", "cached", "last-good", "default"}

// String returns "evaluated", "cached", "last-good" or "default".
func (o Origin) String() string {
	if int(o) < len(originNames) {
		return originNames[o]
	}
	return fmt.Sprintf("Origin(%d)", uint8(o))
}

// Cause says why the provider could not decide. It is the "cause" attribute
// of the pgshift.flags.fallbacks counter.
type Cause string

// The causes of a fallback.
const (
	// CauseProviderNotReady: the provider has not finished initialising.
	CauseProviderNotReady Cause = "provider_not_ready"
	// CauseProviderError: the provider failed (fatal state, general error,
	// parse error in the flag's rules, invalid context).
	CauseProviderError Cause = "provider_error"
	// CauseFlagNotFound: the provider has no flag with the configured key.
	CauseFlagNotFound Cause = "flag_not_found"
	// CauseFlagDisabled: the stage flag exists but is disabled.
	CauseFlagDisabled Cause = "flag_disabled"
	// CauseTypeMismatch: the flag is not of the type the scheme reads.
	CauseTypeMismatch Cause = "type_mismatch"
	// CauseUnknownValue: the stage flag's value names no stage.
	CauseUnknownValue Cause = "unknown_value"
	// CauseReadWithoutWrite: the boolean scheme said read from new without
	// writing it (see WithBooleanFlags).
	CauseReadWithoutWrite Cause = "read_without_write"
)

// Decision is a stage and how it was reached, for dashboards and logs.
type Decision struct {
	Stage  Stage
	Origin Origin
	// Reason is the provider's OpenFeature reason for the decision
	// (TARGETING_MATCH, SPLIT, STATIC, DEFAULT, ...); for LastGood it is the
	// reason of the last good decision, for Default it is empty.
	Reason string
	// Variant is the flag variant the provider chose ("write/read" variants
	// in the boolean scheme).
	Variant string
	// Cause is why the provider could not decide; empty unless Origin is
	// LastGood or Default.
	Cause Cause
}

// Evaluator decides the stage of the user in ctx from OpenFeature flags,
// caches the decision per user and falls back safely when the provider
// cannot decide. It implements Source. It is safe for concurrent use.
type Evaluator struct {
	client *openfeature.Client
	cfg    config
	cache  *decisions

	fallbacks metric.Int64Counter
	logged    sync.Map      // fallbackKey -> struct{}: causes already logged
	seen      atomic.Uint32 // the stages decided so far, a bit per stage

	invalidate openfeature.EventCallback
	changed    *changes
	version    atomic.Uint64 // counts configuration changes (Version)
	closeOnce  sync.Once
	closeErr   error
	shutdown   []func(context.Context) error
}

type fallbackKey struct {
	cause Cause
	flag  string
}

// NewEvaluator returns an Evaluator over client, whatever its provider (a
// flagd daemon, DevCycle, LaunchDarkly, ...). The evaluator drops its cached
// decisions when the client's provider reports a configuration change or
// becomes ready. Close removes its event handlers; the client and its
// provider stay the caller's.
func NewEvaluator(client *openfeature.Client, opts ...Option) (*Evaluator, error) {
	cfg := newConfig(opts)
	if cfg.cacheTTL < 0 {
		return nil, fmt.Errorf("flags: cache TTL %v: give a positive duration to WithCacheTTL, or 0 for decisions that last until the provider reports a change", cfg.cacheTTL)
	}
	if !cfg.def.Valid() {
		return nil, fmt.Errorf("flags: default stage %v: %w", cfg.def, ErrUnknownStage)
	}
	if cfg.readWithoutWrite != nil && !cfg.readWithoutWrite.Valid() {
		return nil, fmt.Errorf("flags: read-without-write stage %v: %w", *cfg.readWithoutWrite, ErrUnknownStage)
	}
	fallbacks, err := cfg.meter.Meter("github.com/pgshift/pgshift/flags").Int64Counter(
		"pgshift.flags.fallbacks",
		metric.WithDescription("Stage decisions the flag provider could not make, answered by the last good decision or the default stage."),
		metric.WithUnit("{decision}"),
	)
	if err != nil {
		return nil, fmt.Errorf("flags: fallback counter: %w", err)
	}
	e := &Evaluator{
		client:    client,
		cfg:       cfg,
		cache:     newDecisions(cfg.cacheSize, cfg.cacheTTL),
		fallbacks: fallbacks,
	}
	// A new configuration may decide differently, and a provider that
	// comes back may have missed changes meanwhile.
	e.changed = newChanges()
	invalidate := func(openfeature.EventDetails) {
		e.version.Add(1)
		e.cache.invalidate()
		e.changed.signal()
	}
	e.invalidate = &invalidate
	client.AddHandler(openfeature.ProviderConfigChange, e.invalidate)
	client.AddHandler(openfeature.ProviderReady, e.invalidate)
	return e, nil
}

// NewProviderEvaluator registers provider in an OpenFeature API of its own
// (not the global one, so several evaluators live in one process), waits
// until it is ready and returns an Evaluator over it. Close shuts the
// provider down.
func NewProviderEvaluator(ctx context.Context, provider openfeature.FeatureProvider, opts ...Option) (*Evaluator, error) {
	api := isolated.NewAPI()
	if err := api.SetProviderAndWait(ctx, provider); err != nil {
		return nil, errors.Join(
			fmt.Errorf("flags: provider %s: %w", provider.Metadata().Name, err),
			api.Shutdown(context.WithoutCancel(ctx)),
		)
	}
	e, err := NewEvaluator(api.NewClient(), opts...)
	if err != nil {
		return nil, errors.Join(err, api.Shutdown(context.WithoutCancel(ctx)))
	}
	e.shutdown = append(e.shutdown, api.Shutdown)
	return e, nil
}

// Close stops the evaluator and shuts down what its constructor started.
// Calls after the first return the first call's result.
func (e *Evaluator) Close() error {
	e.closeOnce.Do(func() {
		e.client.RemoveHandler(openfeature.ProviderConfigChange, e.invalidate)
		e.client.RemoveHandler(openfeature.ProviderReady, e.invalidate)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		for _, f := range e.shutdown {
			errs = append(errs, f(ctx))
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// Stage returns the stage of the user in ctx (see WithUser); it is
// Decide(ctx).Stage.
func (e *Evaluator) Stage(ctx context.Context) Stage { return e.Decide(ctx).Stage }

// Version implements Versioned: it changes each time the provider reports a
// configuration change (or becomes ready).
func (e *Evaluator) Version() uint64 { return e.version.Load() }

// Decide returns the stage of the user in ctx and where it came from. A
// decision made under the current flag configuration (and, with
// WithCacheTTL, less than the TTL ago) is served from the cache without
// allocating; otherwise the flags are evaluated. When the provider cannot
// decide, the answer is the user's last good decision, else the default
// stage; the cause is counted every time and logged once per cause and flag
// for the life of the evaluator.
func (e *Evaluator) Decide(ctx context.Context) Decision {
	u := userFrom(ctx)
	if !e.cfg.noCache {
		if c, fresh, _ := e.cache.get(u.cacheKey); fresh {
			if c.fail == nil {
				d := c.d
				d.Origin = OriginCached
				return d
			}
			// The provider failed for this user less than the TTL ago:
			// answer as it did then, without asking again.
			return e.fellBack(ctx, c, c.fail)
		}
	}
	s := e.cache.begin()
	d, fail := e.evaluate(ctx, u)
	if fail == nil {
		e.seen.Or(1 << d.Stage)
		e.cache.put(u.cacheKey, d, s)
		return d
	}
	e.cache.putFailure(u.cacheKey, fail, s)
	last, _, _ := e.cache.get(u.cacheKey)
	return e.fellBack(ctx, last, fail)
}

// failure is why an evaluation produced no decision.
type failure struct {
	cause  Cause
	flag   string
	detail string
}

func (e *Evaluator) evaluate(ctx context.Context, u *user) (Decision, *failure) {
	// The decision is cached under u alone, so it must be made from u
	// alone: a transaction context merged after WithUser must not leak in.
	ctx = openfeature.WithTransactionContext(ctx, u.ec)
	if e.cfg.booleans {
		return e.evaluateBooleans(ctx, u.ec)
	}
	det, err := e.client.StringValueDetails(ctx, e.cfg.stageFlag, "", u.ec)
	if f := resolutionFailure(e.cfg.stageFlag, det.ResolutionDetail, err); f != nil {
		return Decision{}, f
	}
	if det.Reason == openfeature.DisabledReason {
		return Decision{}, &failure{CauseFlagDisabled, e.cfg.stageFlag, "the flag is disabled"}
	}
	s, err := ParseStage(det.Value)
	if err != nil {
		return Decision{}, &failure{CauseUnknownValue, e.cfg.stageFlag, err.Error()}
	}
	return Decision{Stage: s, Origin: OriginEvaluated, Reason: string(det.Reason), Variant: det.Variant}, nil
}

// evaluateBooleans reads the DevCycle pair. A disabled boolean flag reads
// as false, OpenFeature's default for it, which is the safe side of both.
func (e *Evaluator) evaluateBooleans(ctx context.Context, ec openfeature.EvaluationContext) (Decision, *failure) {
	w, err := e.client.BooleanValueDetails(ctx, e.cfg.writeFlag, false, ec)
	if f := resolutionFailure(e.cfg.writeFlag, w.ResolutionDetail, err); f != nil {
		return Decision{}, f
	}
	r, err := e.client.BooleanValueDetails(ctx, e.cfg.readFlag, false, ec)
	if f := resolutionFailure(e.cfg.readFlag, r.ResolutionDetail, err); f != nil {
		return Decision{}, f
	}
	s, ok := stageFromBooleans(w.Value, r.Value, e.cfg.readWithoutWrite)
	if !ok {
		return Decision{}, &failure{CauseReadWithoutWrite, e.cfg.readFlag,
			fmt.Sprintf("%s is true while %s is false: reads would come from a database that writes do not reach", e.cfg.readFlag, e.cfg.writeFlag)}
	}
	reason := string(w.Reason)
	if r.Reason != w.Reason {
		reason += "/" + string(r.Reason)
	}
	return Decision{Stage: s, Origin: OriginEvaluated, Reason: reason, Variant: w.Variant + "/" + r.Variant}, nil
}

// stageFromBooleans maps the DevCycle pair to a stage (see WithBooleanFlags).
// write=false read=true is a stage only when readWithoutWrite names one.
func stageFromBooleans(write, read bool, readWithoutWrite *Stage) (Stage, bool) {
	switch {
	case write && read:
		return StageLive, true
	case write:
		return StageDualWrite, true
	case read:
		if readWithoutWrite != nil {
			return *readWithoutWrite, true
		}
		return StageOff, false
	default:
		return StageOff, true
	}
}

// resolutionFailure returns why an evaluation gave no value, or nil when it
// gave one. Besides an error, a value with the reason ERROR is a failure:
// some providers (go-feature-flag's in-process one, for errors it has no
// OpenFeature code for) answer the default value that way without an error
// code, and that default must not be taken, or cached, as a decision.
func resolutionFailure(flag string, rd openfeature.ResolutionDetail, err error) *failure {
	if err == nil {
		if rd.Reason != openfeature.ErrorReason {
			return nil
		}
		detail := "the provider answered with reason ERROR and no error code"
		if rd.ErrorMessage != "" {
			detail = rd.ErrorMessage
		}
		return &failure{CauseProviderError, flag, detail}
	}
	cause := CauseProviderError
	switch rd.ErrorCode {
	case openfeature.ProviderNotReadyCode:
		cause = CauseProviderNotReady
	case openfeature.FlagNotFoundCode:
		cause = CauseFlagNotFound
	case openfeature.TypeMismatchCode:
		cause = CauseTypeMismatch
	}
	detail := rd.ErrorMessage
	if detail == "" {
		detail = err.Error()
	}
	return &failure{cause, flag, detail}
}

// fellBack answers for a user the provider could not decide for: last's
// good decision if it has one, else the default stage. It counts the
// fallback and logs its cause the first time it is seen. Not re-armed by
// configuration changes: providers report one as they start (flagd does),
// which would log every cause twice; the counter tells whether a cause
// persists.
func (e *Evaluator) fellBack(ctx context.Context, last entry, f *failure) Decision {
	e.fallbacks.Add(ctx, 1, metric.WithAttributes(
		attribute.String("cause", string(f.cause)),
		attribute.String("flag", f.flag),
	))
	if _, seen := e.logged.LoadOrStore(fallbackKey{f.cause, f.flag}, struct{}{}); !seen {
		e.cfg.log.LogAttrs(ctx, slog.LevelWarn,
			"flags: cannot decide the migration stage; using the last good decision per user, else the default stage (logged once per cause and flag; pgshift.flags.fallbacks counts every one)",
			slog.String("flag", f.flag),
			slog.String("cause", string(f.cause)),
			slog.String("detail", f.detail),
			slog.String("default_stage", e.defaultStage().String()),
		)
	}
	if last.good {
		d := last.d
		d.Origin = OriginLastGood
		d.Cause = f.cause
		return d
	}
	return Decision{Stage: e.defaultStage(), Origin: OriginDefault, Cause: f.cause}
}

// defaultStage is the stage of a user the provider cannot decide for and
// has never decided for: WithDefaultStage's, else AutomaticDefault of the
// stages the flag file's last good version gives (NewFileEvaluator), or of
// the stages decided so far (any other provider).
func (e *Evaluator) defaultStage() Stage {
	if e.cfg.defSet {
		return e.cfg.def
	}
	var mask uint32
	if e.cfg.fileStages != nil {
		mask = e.cfg.fileStages.Load()
	}
	if mask == 0 {
		mask = e.seen.Load()
	}
	var given []Stage
	for _, s := range AllStages() {
		if mask&(1<<s) != 0 {
			given = append(given, s)
		}
	}
	return AutomaticDefault(given)
}

// AutomaticDefault is the default stage when the flags give others the
// stages given: the most conservative stage that still writes every side
// one of them writes. When some stage writes new and some writes old (a
// migration under way), StageDualWrite: old answers, as before the
// migration, and new gets the write too, so no side misses it. When every
// one writes new only, StageComplete; when every one writes old only, or
// none is known, StageOff.
func AutomaticDefault(given []Stage) Stage {
	var writesOld, writesNew bool
	for _, s := range given {
		p := s.Plan()
		writesOld = writesOld || p.Authoritative == SideOld || p.WriteOther
		writesNew = writesNew || p.Authoritative == SideNew || p.WriteOther
	}
	switch {
	case writesOld && writesNew:
		return StageDualWrite
	case writesNew:
		return StageComplete
	}
	return StageOff
}
