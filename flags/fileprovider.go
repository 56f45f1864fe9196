package flags

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"sync/atomic"

	"github.com/open-feature/flagd/core/pkg/evaluator"
	"github.com/open-feature/flagd/core/pkg/logger"
	"github.com/open-feature/flagd/core/pkg/model"
	"github.com/open-feature/flagd/core/pkg/store"
	"github.com/open-feature/flagd/core/pkg/sync"
	"github.com/open-feature/go-sdk/openfeature"
	"go.uber.org/zap"
)

// fileProviderName is the provider's name in OpenFeature's metadata, events
// and pgshift's errors.
const fileProviderName = "pgshift flag file (flagd rules)"

// fileProvider is the OpenFeature provider behind NewFileEvaluator: flagd's
// own rules engine (flagd core's JSON evaluator, the one flagd's daemon and
// its in-process provider run, so a file means the same everywhere) fed
// with checked versions of one file. It replaces flagd's in-process
// provider, which logs through a zap logger of its own on stderr that no
// option silences; this one logs through the evaluator's *slog.Logger.
type fileProvider struct {
	watch  *fileWatch
	eval   *evaluator.JSON
	events chan openfeature.Event

	mu     gosync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	// stages holds the stages the applied configuration gives (a bitmask),
	// for the Evaluator's automatic default stage.
	stages *atomic.Uint32
	scheme scheme
}

var (
	_ openfeature.FeatureProvider = (*fileProvider)(nil)
	_ openfeature.StateHandler    = (*fileProvider)(nil)
	_ openfeature.EventHandler    = (*fileProvider)(nil)
)

func newFileProvider(w *fileWatch) *fileProvider {
	log := logger.NewLogger(zap.New(slogCore{h: w.log.Handler()}), false)
	st, err := store.NewStore(log, nil)
	if err != nil {
		// NewStore fails only on a broken in-memory schema, which the
		// checker built the same way already.
		panic(fmt.Sprintf("flags: flagd store: %v", err))
	}
	return &fileProvider{
		watch:  w,
		eval:   evaluator.NewJSON(log, st),
		events: make(chan openfeature.Event, 1),
	}
}

func (p *fileProvider) Metadata() openfeature.Metadata {
	return openfeature.Metadata{Name: fileProviderName}
}

func (p *fileProvider) Hooks() []openfeature.Hook { return nil }

// Init loads the file's checked configuration and starts following it.
func (p *fileProvider) Init(openfeature.EvaluationContext) error {
	if err := p.eval.SetState(sync.DataSync{FlagData: p.watch.good, Source: p.watch.path}); err != nil {
		return fmt.Errorf("flag file %s: flagd rejects it: %w", p.watch.path, err)
	}
	if err := p.watch.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p.mu.Lock()
	p.cancel, p.done = cancel, done
	p.mu.Unlock()
	go func() {
		defer close(done)
		p.watch.run(ctx, func(js string) { p.apply(ctx, js) })
	}()
	return nil
}

// apply gives flagd a new configuration and tells OpenFeature it changed.
func (p *fileProvider) apply(ctx context.Context, js string) {
	if err := p.eval.SetState(sync.DataSync{FlagData: js, Source: p.watch.path}); err != nil {
		// The checker ran the same evaluator on it; this is not expected.
		p.watch.log.Error("flags: flagd rejected a checked flag file; keeping the last good flag configuration",
			slog.String("file", p.watch.path), slog.Any("error", err))
		return
	}
	// A version without the stage flags keeps the stages of the last one
	// that had them: everyone falls back then, to the stages they had.
	if m := stageMask(js, p.scheme); p.stages != nil && m != 0 {
		p.stages.Store(m)
	}
	select {
	case p.events <- openfeature.Event{
		ProviderName:         fileProviderName,
		EventType:            openfeature.ProviderConfigChange,
		ProviderEventDetails: openfeature.ProviderEventDetails{Message: "flag file " + p.watch.path + " changed"},
	}:
	case <-ctx.Done():
	}
}

// Shutdown stops following the file and waits until the watcher is closed.
func (p *fileProvider) Shutdown() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel = nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (p *fileProvider) EventChannel() <-chan openfeature.Event { return p.events }

func (p *fileProvider) BooleanEvaluation(ctx context.Context, flag string, def bool, fc openfeature.FlattenedContext) openfeature.BoolResolutionDetail {
	v, d := resolveWith(ctx, p.eval.ResolveBooleanValue, flag, def, fc)
	return openfeature.BoolResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

func (p *fileProvider) StringEvaluation(ctx context.Context, flag string, def string, fc openfeature.FlattenedContext) openfeature.StringResolutionDetail {
	v, d := resolveWith(ctx, p.eval.ResolveStringValue, flag, def, fc)
	return openfeature.StringResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

func (p *fileProvider) FloatEvaluation(ctx context.Context, flag string, def float64, fc openfeature.FlattenedContext) openfeature.FloatResolutionDetail {
	v, d := resolveWith(ctx, p.eval.ResolveFloatValue, flag, def, fc)
	return openfeature.FloatResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

func (p *fileProvider) IntEvaluation(ctx context.Context, flag string, def int64, fc openfeature.FlattenedContext) openfeature.IntResolutionDetail {
	v, d := resolveWith(ctx, p.eval.ResolveIntValue, flag, def, fc)
	return openfeature.IntResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

func (p *fileProvider) ObjectEvaluation(ctx context.Context, flag string, def any, fc openfeature.FlattenedContext) openfeature.InterfaceResolutionDetail {
	v, d := resolveWith(ctx, p.eval.ResolveObjectValue, flag, nil, fc)
	if d.ResolutionError != (openfeature.ResolutionError{}) || d.Reason == model.DisabledReason {
		return openfeature.InterfaceResolutionDetail{Value: def, ProviderResolutionDetail: d}
	}
	return openfeature.InterfaceResolutionDetail{Value: v, ProviderResolutionDetail: d}
}

// resolveFunc is one of flagd's typed resolvers.
type resolveFunc[T any] func(ctx context.Context, reqID, flag string, evalCtx map[string]any) (T, string, string, map[string]any, error)

// resolveWith evaluates flag with resolve. A disabled flag or an error
// gives def, with flagd's reason and an OpenFeature error code.
func resolveWith[T any](ctx context.Context, resolve resolveFunc[T], flag string, def T, fc openfeature.FlattenedContext) (T, openfeature.ProviderResolutionDetail) {
	v, variant, reason, meta, err := resolve(ctx, "", flag, fc)
	d := openfeature.ProviderResolutionDetail{Reason: openfeature.Reason(reason), Variant: variant, FlagMetadata: meta}
	switch {
	case err != nil:
		d.ResolutionError = resolutionError(flag, err)
		return def, d
	case reason == model.DisabledReason:
		d.Variant = ""
		return def, d
	}
	return v, d
}

// resolutionError maps flagd's error codes (the error's text) to
// OpenFeature's.
func resolutionError(flag string, err error) openfeature.ResolutionError {
	switch err.Error() {
	case model.FlagNotFoundErrorCode:
		return openfeature.NewFlagNotFoundResolutionError("flag " + flag + " is not in the flag file")
	case model.TypeMismatchErrorCode:
		return openfeature.NewTypeMismatchResolutionError("flag " + flag + " has another type")
	case model.ParseErrorCode:
		return openfeature.NewParseErrorResolutionError("flag " + flag + ": its targeting rule could not be evaluated")
	case model.FlagDisabledErrorCode:
		return openfeature.NewGeneralResolutionError("flag " + flag + " is disabled")
	}
	return openfeature.NewGeneralResolutionError(errors.Join(fmt.Errorf("flag %s", flag), err).Error())
}
