package dualwrite

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgshift/pgshift/flags"
)

// The OpenTelemetry instruments of the facade and of a Repairer, under meter
// "github.com/pgshift/pgshift/dualwrite":
//
//	pgshift.dualwrite.duration          histogram, seconds; op, kind (read, write, shadow), side, outcome (ok, error)
//	pgshift.dualwrite.errors            counter; op, kind, side
//	pgshift.dualwrite.other_missed      counter; op, side: writes the other side missed (left to repair)
//	pgshift.dualwrite.shadow_mismatches counter; op
//	pgshift.dualwrite.shadow_dropped    counter; op: shadow reads not made (ShadowConcurrency reached, or the other side's breaker open)
//	pgshift.dualwrite.breaker_state     gauge; side: 0 closed, 1 probing, 2 open (Config.BreakerFailures)
//	pgshift.dualwrite.side_skipped      counter; side: calls that skipped the side because its breaker was open
//	pgshift.repair.backlog              gauge; side: repair log entries on that side (Repairer)
//	pgshift.repair.oldest_age           gauge, seconds; side: age of the oldest entry (Repairer)
//	pgshift.repair.repaired             counter; side (the side copied to) (Repairer)
const meterName = "github.com/pgshift/pgshift/dualwrite"

type kind uint8

const (
	kindRead kind = iota
	kindWrite
	kindShadow
)

var kindNames = [...]string{"read", "write", "shadow"}

type instruments struct {
	duration   metric.Float64Histogram
	errors     metric.Int64Counter
	missed     metric.Int64Counter
	mismatches metric.Int64Counter
	catchUps   metric.Int64Counter
	dropped    metric.Int64Counter

	mu   sync.RWMutex
	sets map[attrKey]metric.MeasurementOption

	stats struct {
		mismatches, missed, shadowReads, shadowTransient, shadowDropped, shadowPending atomic.Int64
	}
}

type attrKey struct {
	op     string
	kind   kind
	side   flags.Side
	failed bool
	which  uint8 // 0 duration, 1 errors, 2 missed, 3 mismatches, 4 dropped
}

func newInstruments(mp metric.MeterProvider, f *Facade) (*instruments, error) {
	m := mp.Meter(meterName)
	in := &instruments{sets: make(map[attrKey]metric.MeasurementOption)}
	var err error
	if in.duration, err = m.Float64Histogram("pgshift.dualwrite.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of one side's part of a facade call."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)); err != nil {
		return nil, err
	}
	if in.errors, err = m.Int64Counter("pgshift.dualwrite.errors", metric.WithDescription("Failed parts of facade calls, per side.")); err != nil {
		return nil, err
	}
	if in.missed, err = m.Int64Counter("pgshift.dualwrite.other_missed", metric.WithDescription("Writes the other side missed and the repair worker will copy.")); err != nil {
		return nil, err
	}
	if in.mismatches, err = m.Int64Counter("pgshift.dualwrite.shadow_mismatches", metric.WithDescription("Shadow reads whose answer differed from the authoritative one.")); err != nil {
		return nil, err
	}
	if in.catchUps, err = m.Int64Counter("pgshift.dualwrite.catch_ups", metric.WithDescription("Routing keys whose repair-log entries were repaired before a new authority served them (after a stage change).")); err != nil {
		return nil, err
	}
	if in.dropped, err = m.Int64Counter("pgshift.dualwrite.shadow_dropped", metric.WithDescription("Shadow reads not made: too many in flight, or the other side's breaker open.")); err != nil {
		return nil, err
	}
	state, err := m.Int64ObservableGauge("pgshift.dualwrite.breaker_state", metric.WithDescription("State of each side's breaker: 0 closed, 1 probing, 2 open."))
	if err != nil {
		return nil, err
	}
	skipped, err := m.Int64ObservableCounter("pgshift.dualwrite.side_skipped", metric.WithDescription("Calls that skipped a side because its breaker was open."))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, b := range f.breakers {
			side := metric.WithAttributes(attribute.String("side", b.side.String()))
			o.ObserveInt64(state, breakerStateValue[b.state()], side)
			o.ObserveInt64(skipped, b.skipped.Load(), side)
		}
		return nil
	}, state, skipped)
	return in, err
}

// attrs returns the (cached) attribute option of one measurement, so that
// recording does not allocate.
func (in *instruments) attrs(k attrKey) metric.MeasurementOption {
	in.mu.RLock()
	opt, ok := in.sets[k]
	in.mu.RUnlock()
	if ok {
		return opt
	}
	kv := []attribute.KeyValue{attribute.String("op", k.op)}
	switch k.which {
	case 0, 1:
		kv = append(kv, attribute.String("kind", kindNames[k.kind]), attribute.String("side", k.side.String()))
		if k.which == 0 {
			outcome := "ok"
			if k.failed {
				outcome = "error"
			}
			kv = append(kv, attribute.String("outcome", outcome))
		}
	case 2:
		kv = append(kv, attribute.String("side", k.side.String()))
	}
	opt = metric.WithAttributeSet(attribute.NewSet(kv...))
	in.mu.Lock()
	in.sets[k] = opt
	in.mu.Unlock()
	return opt
}

func (in *instruments) record(ctx context.Context, op string, k kind, side flags.Side, start time.Time, err error) {
	failed := err != nil
	in.duration.Record(ctx, time.Since(start).Seconds(), in.attrs(attrKey{op: op, kind: k, side: side, failed: failed}))
	if k == kindShadow {
		in.stats.shadowReads.Add(1)
	}
	if failed {
		in.errors.Add(ctx, 1, in.attrs(attrKey{op: op, kind: k, side: side, which: 1}))
	}
}

func (in *instruments) otherFailed(ctx context.Context, op string, side flags.Side) {
	in.stats.missed.Add(1)
	in.missed.Add(ctx, 1, in.attrs(attrKey{op: op, side: side, which: 2}))
}

var breakerStateValue = map[BreakerState]int64{BreakerClosed: 0, BreakerProbing: 1, BreakerOpen: 2}

func (in *instruments) shadowDropped(ctx context.Context, op string) {
	in.stats.shadowDropped.Add(1)
	in.dropped.Add(ctx, 1, in.attrs(attrKey{op: op, which: 4}))
}

func (in *instruments) mismatch(ctx context.Context, op string) {
	in.stats.mismatches.Add(1)
	in.mismatches.Add(ctx, 1, in.attrs(attrKey{op: op, which: 3}))
}

// repairInstruments are a Repairer's instruments.
type repairInstruments struct {
	repaired      metric.Int64Counter
	onOld, onNew  metric.MeasurementOption // attribute side=old, side=new
	repairedTotal atomic.Int64
}

func (in *repairInstruments) side(s flags.Side) metric.MeasurementOption {
	if s == flags.SideNew {
		return in.onNew
	}
	return in.onOld
}

func newRepairInstruments(mp metric.MeterProvider, r *Repairer) (*repairInstruments, error) {
	m := mp.Meter(meterName)
	in := &repairInstruments{
		onOld: metric.WithAttributes(attribute.String("side", flags.SideOld.String())),
		onNew: metric.WithAttributes(attribute.String("side", flags.SideNew.String())),
	}
	var err error
	if in.repaired, err = m.Int64Counter("pgshift.repair.repaired", metric.WithDescription("Rows the repair worker copied or deleted, per side written.")); err != nil {
		return nil, err
	}
	backlog, err := m.Int64ObservableGauge("pgshift.repair.backlog", metric.WithDescription("Repair log entries waiting on each side."))
	if err != nil {
		return nil, err
	}
	oldest, err := m.Float64ObservableGauge("pgshift.repair.oldest_age", metric.WithUnit("s"), metric.WithDescription("Age of the oldest repair log entry on each side."))
	if err != nil {
		return nil, err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		b := r.LastBacklog()
		for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
			sb := b.Side(side)
			o.ObserveInt64(backlog, sb.Entries, in.side(side))
			o.ObserveFloat64(oldest, sb.OldestAge.Seconds(), in.side(side))
		}
		return nil
	}, backlog, oldest)
	return in, err
}

func (in *repairInstruments) repairedRows(ctx context.Context, to flags.Side, n int) {
	in.repairedTotal.Add(int64(n))
	in.repaired.Add(ctx, int64(n), in.side(to))
}

// Stats are counters since the facade started, for dashboards and tests;
// the same figures are exported as OpenTelemetry instruments.
type Stats struct {
	// ShadowReads is the number of reads of the other side made to compare.
	ShadowReads int64
	// ShadowMismatches is the number of those whose answer differed, and
	// still differed when read again.
	ShadowMismatches int64
	// ShadowTransient is the number of differences that were gone when read
	// again (a write of the same rows was in flight).
	ShadowTransient int64
	// OtherMissed is the number of writes the other side missed (failed,
	// timed out or diverged), left to the repair worker.
	OtherMissed int64
	// ShadowPending is the number of differences on a routing key whose
	// rows the repair log still holds entries for (a backlog draining after
	// an outage): expected, so not counted as mismatches.
	ShadowPending int64
	// ShadowDropped is the number of shadow reads not made: all
	// Config.ShadowConcurrency were in flight, or the other side's breaker
	// was open.
	ShadowDropped int64
	// OldBreaker and NewBreaker are the states of the sides' breakers.
	OldBreaker, NewBreaker BreakerState
	// OldSkipped and NewSkipped count the calls that skipped a side because
	// its breaker was open: writes whose rows went to the repair log
	// instead, and shadow reads dropped.
	OldSkipped, NewSkipped int64
	// Repaired is the number of rows the facade's repair worker copied or
	// deleted.
	Repaired int64
	// Backlog is the repair logs as the facade's repair worker last read
	// them (zero when it does not run).
	Backlog Backlog
}

// Stats returns the facade's counters.
func (f *Facade) Stats() Stats {
	s := &f.m.stats
	return Stats{
		ShadowReads:      s.shadowReads.Load(),
		ShadowMismatches: s.mismatches.Load(),
		ShadowTransient:  s.shadowTransient.Load(),
		OtherMissed:      s.missed.Load(),
		ShadowDropped:    s.shadowDropped.Load(),
		ShadowPending:    s.shadowPending.Load(),
		OldBreaker:       f.breaker(flags.SideOld).state(),
		NewBreaker:       f.breaker(flags.SideNew).state(),
		OldSkipped:       f.breaker(flags.SideOld).skipped.Load(),
		NewSkipped:       f.breaker(flags.SideNew).skipped.Load(),
		Repaired:         f.repairer.Repaired(),
		Backlog:          f.repairer.LastBacklog(),
	}
}
