package dualwrite

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// The defaults of Config and RepairerConfig: a field left at its zero value
// takes these.
const (
	// SchemaDefault is the schema of the tables write functions Touch.
	SchemaDefault = "public"
	// OtherTimeoutDefault bounds the other side's part of a write and of a
	// shadow read.
	OtherTimeoutDefault = 2 * time.Second
	// CallTimeoutDefault bounds a facade call whose context has no earlier
	// deadline.
	CallTimeoutDefault = 30 * time.Second
	// BreakerFailuresDefault is how many failures of a side in a row open its
	// breaker.
	BreakerFailuresDefault = 3
	// BreakerCooldownDefault is how long a side whose breaker opened is
	// skipped before a probe tries it again.
	BreakerCooldownDefault = time.Second
	// ShadowConcurrencyDefault is how many shadow reads may be in flight at
	// once; more are dropped.
	ShadowConcurrencyDefault = 4
	// ShadowSampleDefault is the share of reads in shadow and live that are
	// also read on the other side and compared: all of them.
	ShadowSampleDefault = 1.0
	// ShadowRecheckDefault is how long a shadow read that found a difference
	// waits before it reads both sides again.
	ShadowRecheckDefault = 100 * time.Millisecond

	// RepairIntervalDefault is the wait between repair passes when the logs
	// are empty.
	RepairIntervalDefault = 500 * time.Millisecond
	// RepairBatchSizeDefault is how many log entries one pass claims per side.
	RepairBatchSizeDefault = 200
	// RepairGraceDefault is how old an entry must be before a Repairer of its
	// own takes it: OtherTimeoutDefault and a second. A facade's repairer
	// uses its Config.OtherTimeout and a second instead.
	RepairGraceDefault = OtherTimeoutDefault + time.Second
	// RepairPassTimeoutDefault bounds one repair pass (one batch per side).
	RepairPassTimeoutDefault = 10 * time.Second
	// RepairMaxBackoffDefault caps the wait between passes while a side is
	// unreachable.
	RepairMaxBackoffDefault = 10 * time.Second
)

// Config configures a Facade. Old, New and Stages are required; every other
// field has a useful zero value (the ...Default constants).
type Config struct {
	// Old and New are the two databases. Both must have pgshift's tables
	// (see Install).
	Old, New *pgxpool.Pool
	// Stages decides the stage of the user in a call's context.
	Stages flags.Source
	// GlobalStages decides the stage of operations marked Op.Global. By
	// default it is Stages asked with an empty evaluation context.
	GlobalStages flags.Source
	// Schema is the schema of the tables write functions Touch;
	// SchemaDefault when empty.
	Schema string
	// OtherTimeout bounds the other side's part of a write and of a shadow
	// read; OtherTimeoutDefault when zero. A write whose other side takes
	// longer is left to the repair worker.
	OtherTimeout time.Duration
	// CallTimeout bounds each Read and Write (the authoritative side's part
	// included) whose context has no earlier deadline, so that a hung
	// authoritative side fails calls, logged, instead of holding callers
	// and connections forever; CallTimeoutDefault when zero, none when
	// negative. A write whose COMMIT was sent when the bound ended returns
	// ErrCommitUnknown, as with any deadline.
	CallTimeout time.Duration
	// BreakerFailures is how many failures of a side in a row (connection
	// refused or reset, a statement that did not answer in time: not an
	// error the server answered with) open the side's breaker; so does a
	// single timeout after which a ping of the side, on a connection of its
	// own, gets no answer within half of OtherTimeout (a timeout alone may
	// be a hot row's lock or a busy pool on a healthy side). While a side's breaker is open, writes skip
	// that side when it is the other side (their rows go to the repair log,
	// so the guarantee holds) and shadow reads of it are dropped: nobody
	// waits on a side known to be down or hung. BreakerFailuresDefault when
	// zero.
	BreakerFailures int
	// BreakerCooldown is how long a side whose breaker opened is skipped
	// before a probe (a ping bounded by OtherTimeout) tries it; the first
	// probe that gets an answer closes the breaker, a failed one keeps it
	// open for another BreakerCooldown. So a side that is down sees one
	// connection attempt per BreakerCooldown, not one per write.
	// BreakerCooldownDefault when zero.
	BreakerCooldown time.Duration
	// ShadowConcurrency bounds the shadow reads in flight (those of shadow
	// and live, and their rechecks); a read that finds them all taken is
	// not compared (Stats.ShadowDropped) rather than queued, so a slow
	// other side never fills its pool with shadow reads and writes always
	// find connections there. Keep it below the other pool's size.
	// ShadowConcurrencyDefault when zero.
	ShadowConcurrency int
	// ShadowSample is the share of reads in shadow and live, between 0 and
	// 1, that are also read on the other side and compared;
	// ShadowSampleDefault (all) when zero. To compare none, use a stage
	// that does not compare (dualwrite, rampdown).
	ShadowSample float64
	// ShadowRecheck is how long a shadow read that found a difference waits
	// before reading both sides again; it reads them up to four times,
	// waiting twice as long each time, and only a difference that is still
	// there counts as a mismatch. ShadowRecheckDefault when zero; negative
	// counts every difference at once.
	ShadowRecheck time.Duration
	// Repair tunes the repair worker the facade runs (Facade.Repairer). Its
	// pools, logger and meter provider are the facade's; its Grace is
	// OtherTimeout and a second unless set.
	Repair RepairConfig
	// RepairDisabled stops the facade from running its repair worker;
	// another process (a Repairer of its own, or `pgshift repair`) must
	// drain the logs then.
	RepairDisabled bool
	// Capture has PostgreSQL record the rows a write changes on the
	// authoritative side (the capture triggers of InstallCapture), in
	// addition to the rows the write function Touches: write functions
	// need not Touch at all. A captured row is locked after the statement
	// that changed it, so a write costs a round trip or two more than with
	// Touch (see the README). Rows of tables without the triggers are seen
	// only if Touched.
	Capture bool
	// Strict fails a write whose statements changed a row it did not Touch,
	// with an error naming the table and key (a *NotTouchedError), and logs
	// a warning for a Touch of a row nothing changed. It needs the capture
	// triggers and costs a round trip per write: turn it on in tests, so
	// that a missed Touch fails a test instead of drifting in production.
	Strict bool
	// Logger receives the facade's logs; slog.Default() when nil. A warning
	// about one routing key (its catch-up cannot finish while a side does
	// not answer, so each of its calls would warn) is logged at most once
	// every 30 s per key, with how often it repeated meanwhile ("repeated").
	Logger *slog.Logger
	// MeterProvider provides the facade's instruments; the global
	// OpenTelemetry provider when nil.
	MeterProvider metric.MeterProvider

	// hooks are the points at which tests interfere with a write (see
	// export_test.go); nil in real use.
	hooks *hooks
}

// hooks are points in a write at which a test can act; nil functions are
// skipped.
type hooks struct {
	// beforeCommit runs before a transaction's COMMIT is sent (inline with a
	// statement or on its own), with the side, whether it is authoritative,
	// and the server process id of its connection.
	beforeCommit func(side flags.Side, authoritative bool, pid uint32)
	// heartbeatEvery replaces heartbeatInterval when set.
	heartbeatEvery time.Duration
}

// RepairConfig tunes a repair worker: the facade's (Config.Repair) or one
// of its own (RepairerConfig).
type RepairConfig struct {
	// Interval between passes when the logs are empty;
	// RepairIntervalDefault when zero.
	Interval time.Duration
	// BatchSize is how many log entries one pass claims per side;
	// RepairBatchSizeDefault when zero. A started worker doubles it after
	// each pass that took a whole batch, up to 2,000 (pgshift repair's
	// pass), so that a backlog drains at an operator's drain speed, and
	// returns to it after a pass that did not. Drain keeps it.
	BatchSize int
	// Grace is how old an entry must be before the worker takes it, so that
	// writes still in flight confirm their own; RepairGraceDefault when
	// zero (for the facade's worker: Config.OtherTimeout and a second).
	Grace time.Duration
	// MaxBackoff caps the wait between passes while a side is unreachable;
	// RepairMaxBackoffDefault when zero.
	MaxBackoff time.Duration
	// PassTimeout bounds one pass (one batch per side): a pass on a side
	// that hangs fails after it, is logged, and backs off;
	// RepairPassTimeoutDefault when zero.
	PassTimeout time.Duration
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = SchemaDefault
	}
	if c.OtherTimeout == 0 {
		c.OtherTimeout = OtherTimeoutDefault
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = CallTimeoutDefault
	}
	if c.ShadowRecheck == 0 {
		c.ShadowRecheck = ShadowRecheckDefault
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = BreakerFailuresDefault
	}
	if c.BreakerCooldown == 0 {
		c.BreakerCooldown = BreakerCooldownDefault
	}
	if c.ShadowConcurrency == 0 {
		c.ShadowConcurrency = ShadowConcurrencyDefault
	}
	if c.ShadowSample == 0 {
		c.ShadowSample = ShadowSampleDefault
	}
	if c.GlobalStages == nil && c.Stages != nil {
		c.GlobalStages = emptyContextSource{c.Stages}
	}
	if c.Repair.Grace == 0 {
		c.Repair.Grace = c.OtherTimeout + time.Second
	}
	c.Repair = c.Repair.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}

// validate reports the first field that is missing or out of range, with
// what to do about it. Call it on a config withDefaults returned.
func (c Config) validate() error {
	switch {
	case c.Old == nil || c.New == nil:
		return errors.New("dualwrite: Config.Old and Config.New are required: give the pools of both databases")
	case c.Stages == nil:
		return errors.New("dualwrite: Config.Stages is required: give a flags.Source (flags.NewFileEvaluator, or flags.Static for one stage)")
	case c.OtherTimeout < 0:
		return fmt.Errorf("dualwrite: Config.OtherTimeout is %v: give a positive duration, or zero for the default (%v)", c.OtherTimeout, OtherTimeoutDefault)
	case c.BreakerFailures < 0:
		return fmt.Errorf("dualwrite: Config.BreakerFailures is %d: give a positive number, or zero for the default (%d)", c.BreakerFailures, BreakerFailuresDefault)
	case c.BreakerCooldown < 0:
		return fmt.Errorf("dualwrite: Config.BreakerCooldown is %v: give a positive duration, or zero for the default (%v)", c.BreakerCooldown, BreakerCooldownDefault)
	case c.ShadowConcurrency < 0:
		return fmt.Errorf("dualwrite: Config.ShadowConcurrency is %d: give a positive number, or zero for the default (%d)", c.ShadowConcurrency, ShadowConcurrencyDefault)
	case c.ShadowSample < 0 || c.ShadowSample > 1 || c.ShadowSample != c.ShadowSample:
		return fmt.Errorf("dualwrite: Config.ShadowSample is %v: give a share between 0 and 1, or zero for the default (%v, every read)", c.ShadowSample, ShadowSampleDefault)
	}
	if err := validSchema(c.Schema); err != nil {
		return fmt.Errorf("dualwrite: Config.Schema: %w", err)
	}
	return c.Repair.validate("Config.Repair")
}

// validSchema checks a schema name: PostgreSQL names are at most 63 bytes
// and hold no NUL, and pgshift's own schema holds no application tables.
func validSchema(name string) error {
	switch {
	case len(name) > 63:
		return fmt.Errorf("schema name %.20q... is %d bytes long; PostgreSQL names are at most 63", name, len(name))
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("schema name %q holds a NUL byte", name)
	case name == pgshiftdb.Schema:
		return fmt.Errorf("schema %q holds pgshift's own tables; name the application's schema", name)
	}
	return nil
}

// RepairerConfig configures a Repairer of its own (NewRepairer). Old and
// New are required; every other field has a useful zero value.
type RepairerConfig struct {
	// Old and New are the two databases whose repair logs are drained.
	Old, New *pgxpool.Pool
	RepairConfig
	// Logger receives the worker's logs; slog.Default() when nil.
	Logger *slog.Logger
	// MeterProvider provides the worker's instruments; the global
	// OpenTelemetry provider when nil.
	MeterProvider metric.MeterProvider
}

func (c RepairerConfig) withDefaults() RepairerConfig {
	c.RepairConfig = c.RepairConfig.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	return c
}

func (c RepairerConfig) validate() error {
	if c.Old == nil || c.New == nil {
		return errors.New("dualwrite: RepairerConfig.Old and RepairerConfig.New are required: give the pools of both databases")
	}
	return c.RepairConfig.validate("RepairerConfig")
}

func (c RepairConfig) withDefaults() RepairConfig {
	if c.Interval == 0 {
		c.Interval = RepairIntervalDefault
	}
	if c.BatchSize == 0 {
		c.BatchSize = RepairBatchSizeDefault
	}
	if c.Grace == 0 {
		c.Grace = RepairGraceDefault
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = RepairMaxBackoffDefault
	}
	if c.PassTimeout == 0 {
		c.PassTimeout = RepairPassTimeoutDefault
	}
	return c
}

func (c RepairConfig) validate(name string) error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("dualwrite: %s.Interval is %v: give a positive duration, or zero for the default (%v)", name, c.Interval, RepairIntervalDefault)
	case c.BatchSize < 0:
		return fmt.Errorf("dualwrite: %s.BatchSize is %d: give a positive number, or zero for the default (%d)", name, c.BatchSize, RepairBatchSizeDefault)
	case c.Grace < 0:
		return fmt.Errorf("dualwrite: %s.Grace is %v: give a positive duration, or zero for the default", name, c.Grace)
	case c.MaxBackoff < 0:
		return fmt.Errorf("dualwrite: %s.MaxBackoff is %v: give a positive duration, or zero for the default (%v)", name, c.MaxBackoff, RepairMaxBackoffDefault)
	case c.PassTimeout < 0:
		return fmt.Errorf("dualwrite: %s.PassTimeout is %v: give a positive duration, or zero for the default (%v)", name, c.PassTimeout, RepairPassTimeoutDefault)
	}
	return nil
}
