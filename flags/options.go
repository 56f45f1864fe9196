package flags

import (
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// The flag keys an Evaluator reads unless told otherwise.
const (
	// DefaultStageFlag is the string flag whose value names the stage.
	DefaultStageFlag = "pgshift-stage"
	// DefaultWriteFlag is the DevCycle scheme's boolean "also write new".
	DefaultWriteFlag = "write-to-new-db"
	// DefaultReadFlag is the DevCycle scheme's boolean "read from new".
	DefaultReadFlag = "read-from-new-db"
)

// Option configures an Evaluator.
type Option func(*config)

type config struct {
	stageFlag string

	booleans         bool
	writeFlag        string
	readFlag         string
	readWithoutWrite *Stage

	def    Stage
	defSet bool
	// fileStages, set by NewFileEvaluator, holds the stages the file's
	// last good version gives (a bitmask), for the automatic default.
	fileStages *atomic.Uint32
	// health, set by NewFileEvaluator, is the state of its file.
	health    *health
	cacheSize int
	cacheTTL  time.Duration
	noCache   bool
	log       *slog.Logger
	meter     metric.MeterProvider
}

func newConfig(opts []Option) config {
	c := config{
		stageFlag: DefaultStageFlag,
		writeFlag: DefaultWriteFlag,
		readFlag:  DefaultReadFlag,
		cacheSize: DefaultCacheSize,
	}
	for _, opt := range opts {
		opt(&c)
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.meter == nil {
		c.meter = otel.GetMeterProvider()
	}
	return c
}

// WithStageFlag selects the one-string-flag scheme (the default) and names
// its flag (default DefaultStageFlag). The flag's value is a stage name as
// ParseStage reads it.
func WithStageFlag(key string) Option {
	return func(c *config) {
		c.booleans = false
		if key != "" {
			c.stageFlag = key
		}
	}
}

// WithBooleanFlags selects the DevCycle scheme of two boolean flags, "also
// write the new database" and "read from the new database"; empty keys keep
// DefaultWriteFlag and DefaultReadFlag. The pair maps to stages as follows:
//
//	write  read   stage
//	false  false  StageOff
//	true   false  StageDualWrite
//	true   true   StageLive
//	false  true   unsafe: the fallback (see WithReadWithoutWrite)
//
// write=false read=true would serve reads from new while writes reach only
// old: every write would vanish from the user's view. It is treated like an
// unknown flag value (last good decision, else the default stage; logged
// and counted with cause CauseReadWithoutWrite) unless WithReadWithoutWrite
// names the stage it means. The scheme has no StageShadow, StageRampdown or StageComplete;
// use the string flag for those.
func WithBooleanFlags(writeKey, readKey string) Option {
	return func(c *config) {
		c.booleans = true
		if writeKey != "" {
			c.writeFlag = writeKey
		}
		if readKey != "" {
			c.readFlag = readKey
		}
	}
}

// WithReadWithoutWrite makes write=false read=true of the boolean scheme
// mean stage s instead of a fallback: for example StageComplete, when an
// operator retires the write flag after the migration.
func WithReadWithoutWrite(s Stage) Option {
	return func(c *config) { c.readWithoutWrite = &s }
}

// WithDefaultStage sets the stage of a user for whom the provider cannot
// decide and who has no last good decision. Without it the default is
// chosen from what the flags give others (see AutomaticDefault): the most
// conservative stage that still writes every side some user's stage
// writes, so that a user nobody could decide for never writes one side
// while the others write both.
func WithDefaultStage(s Stage) Option {
	return func(c *config) { c.def, c.defSet = s, true }
}

// WithCacheSize bounds the decision cache to n users (default
// DefaultCacheSize). n <= 0 keeps no decisions at all, not even the last
// good ones used when the provider fails.
func WithCacheSize(n int) Option {
	return func(c *config) { c.cacheSize = n }
}

// WithCacheTTL bounds how long a decision is served from the cache to d,
// for providers that do not report configuration changes (OpenFeature's
// PROVIDER_CONFIGURATION_CHANGED event), such as the OFREP provider (a
// remote flag server like go-feature-flag's relay proxy) and
// go-feature-flag's in-process provider. A change then reaches decisions
// within d plus the provider's
// own refresh (its polling interval, or none for a remote evaluation).
// After d a user's next call asks the provider again; its answer replaces
// the cached one.
//
// d also paces a provider that fails: after a failed evaluation the user's
// last good decision (else the default stage) is answered for d without
// asking the provider again, counted as a fallback each time, so a flag
// server that is down or slow costs each user one failed request per d,
// not one per query.
//
// 0, the default, keeps decisions until the provider reports a
// configuration change (or becomes ready again), which is right for
// providers that report changes, such as the flag file of
// NewFileEvaluator; with a provider that reports none, a decision then
// lasts until it is evicted. A negative d is an error from the
// constructor. Checking the age costs a clock read on every cache hit
// (BENCHMARKS.md has the figures).
func WithCacheTTL(d time.Duration) Option {
	return func(c *config) { c.cacheTTL = d }
}

// WithoutCache makes every call evaluate the flags. Last good decisions are
// still kept for when the provider fails.
func WithoutCache() Option {
	return func(c *config) { c.noCache = true }
}

// WithLogger sets the logger for fallbacks and flag file reloads (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.log = l }
}

// WithMeterProvider sets where the fallback counter is registered (default
// otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.meter = mp }
}
