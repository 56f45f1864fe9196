package dualwrite

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/flags"
)

// ReadFunc is one read, run on the side that answers and, in shadow and live,
// on the other side as well.
type ReadFunc[T any] func(ctx context.Context, q pgshift.Querier) (T, error)

// Comparator reports whether two answers to the same read agree.
type Comparator[T any] func(authoritative, other T) bool

// Read runs fn on the authoritative side of the stage of the user in ctx and
// returns its answer. In shadow and live it also runs fn on the other side,
// concurrently, and compares the two answers with reflect.DeepEqual; the
// other side's latency and errors never reach the caller. A difference is
// read again on both sides after Config.ShadowRecheck, and again after twice
// as long each time (four times in all), before it counts as a mismatch, so
// a write of the same rows in flight between the two reads is not reported.
func Read[T any](ctx context.Context, f *Facade, op Op, fn ReadFunc[T]) (T, error) {
	return ReadCompare(ctx, f, op, fn, nil)
}

// ReadCompare is Read with a comparator of the caller's (nil means
// reflect.DeepEqual).
func ReadCompare[T any](ctx context.Context, f *Facade, op Op, fn ReadFunc[T], equal Comparator[T]) (res T, err error) {
	bctx, cancel, timedOut := f.bound(ctx)
	defer cancel()
	res, err = readCompare(bctx, f, op, fn, equal)
	return res, timedOut(op, err)
}

// readCompare is ReadCompare within the call's bound; its shadow read does
// not end with the call (startShadow).
func readCompare[T any](ctx context.Context, f *Facade, op Op, fn ReadFunc[T], equal Comparator[T]) (T, error) {
	stage, err := f.stage(ctx, op)
	if err == nil {
		_, err = f.caughtUp(ctx, op, stage, false)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	plan := stage.Plan()
	auth := plan.Authoritative
	p := f.pools.acquire()
	defer p.release()
	var shadow chan<- answer[T]
	if plan.CompareReads && f.shadowAdmit(ctx, op, auth.Other()) {
		shadow = startShadow(ctx, f, p, op, stage, fn, equal)
	}
	start := time.Now()
	res, err := fn(ctx, reader(p, auth))
	f.m.record(ctx, op.Name, kindRead, auth, start, err)
	if shadow != nil {
		shadow <- answer[T]{res, err}
	}
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		recordOutcome(ctx, op, stage, auth)
	}
	if err != nil {
		return res, callError("read", op, auth, err)
	}
	return res, nil
}

// shadowAdmit decides whether a read is also read on the other side: a
// sample of Config.ShadowSample, and only when a shadow slot is free
// (Config.ShadowConcurrency) and the other side's breaker is closed. A read
// that is not admitted for either of those reasons is dropped, never
// queued: a slow other side must not hold the caller or fill its pool. An
// admitted read holds a slot; startShadow gives it back.
func (f *Facade) shadowAdmit(ctx context.Context, op Op, other flags.Side) bool {
	if f.cfg.ShadowSample < 1 && rand.Float64() >= f.cfg.ShadowSample {
		return false
	}
	if !f.breaker(other).allow() {
		f.m.shadowDropped(ctx, op.Name)
		return false
	}
	select {
	case f.shadowSem <- struct{}{}:
		return true
	default:
		f.m.shadowDropped(ctx, op.Name)
		return false
	}
}

// ErrCopyInRead is returned by CopyFrom on the Querier of a read function:
// it would write the one side the read runs on. Copy rows in a Write.
var ErrCopyInRead = errors.New("dualwrite: CopyFrom in a read function would write one side only: copy rows in a Write")

// readQuerier is the Querier a read function gets: one side's pool, whose
// CopyFrom refuses (ErrCopyInRead). Its batches run as the pool's do.
type readQuerier struct{ *pgxpool.Pool }

func (readQuerier) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, ErrCopyInRead
}

// reader is side s of p for a read function.
func reader(p *pools, s flags.Side) pgshift.Querier { return readQuerier{p.side(s)} }

type answer[T any] struct {
	v   T
	err error
}

// startShadow reads the other side in the background and compares its answer
// with the authoritative one, which it receives on the returned channel.
func startShadow[T any](ctx context.Context, f *Facade, p *pools, op Op, stage flags.Stage, fn ReadFunc[T], equal Comparator[T]) chan<- answer[T] {
	authCh := make(chan answer[T], 1)
	other := stage.Plan().Authoritative.Other()
	routingKey := flags.RoutingKey(ctx)
	user := userOf(ctx)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.OtherTimeout)
	f.bg.Add(1)
	p.holdMore()
	go func() {
		defer f.bg.Done()
		defer p.release()
		defer func() { <-f.shadowSem }()
		defer cancel()
		start := time.Now()
		ov, oerr := fn(sctx, reader(p, other))
		f.m.record(sctx, op.Name, kindShadow, other, start, oerr)
		f.breaker(other).report(oerr)
		mismatched := false
		defer func() {
			if mismatched {
				f.shadows.add(op.Name, user, 1, 1)
			} else {
				f.shadows.add(op.Name, user, 1, 0)
			}
		}()
		a := <-authCh
		switch {
		case a.err != nil && !errors.Is(a.err, pgx.ErrNoRows):
			return // nothing to compare against
		case oerr != nil && !errors.Is(oerr, pgx.ErrNoRows):
			f.log.Debug("shadow read failed", "op", op.Name, "side", other, "routing_key", routingKey, "err", oerr)
			return
		}
		if agree(a, answer[T]{ov, oerr}, equal) {
			return
		}
		if f.cfg.ShadowRecheck > 0 && recheckAgrees(context.WithoutCancel(ctx), f, p, stage, fn, equal) {
			// A write of the same rows was in flight between the two
			// reads; both sides agree now.
			f.m.stats.shadowTransient.Add(1)
			return
		}
		if pendingRepair(context.WithoutCancel(ctx), f, p, routingKey) {
			// The repair worker has yet to copy this key's rows (a backlog
			// draining after an outage): a difference is expected.
			f.m.stats.shadowPending.Add(1)
			f.log.Debug("shadow read differs on a routing key with pending repairs; counted as pending, not as a mismatch",
				"op", op.Name, "routing_key", routingKey)
			return
		}
		f.m.mismatch(sctx, op.Name)
		mismatched = true
		// Row contents hold personal data: log who and what, never the rows.
		f.log.Warn("shadow read mismatch", "op", op.Name, "stage", stage, "authoritative", stage.Plan().Authoritative,
			"routing_key", routingKey, "authoritative_found", a.err == nil, "other_found", oerr == nil)
	}()
	return authCh
}

func agree[T any](a, o answer[T], equal Comparator[T]) bool {
	aFound, oFound := a.err == nil, o.err == nil
	if aFound != oFound {
		return false
	}
	if !aFound {
		return true // neither side has it
	}
	if equal != nil {
		return equal(a.v, o.v)
	}
	return reflect.DeepEqual(a.v, o.v)
}

// pendingRepair reports whether either side's repair log holds an entry of
// routingKey (any entry when it is empty). A check that fails says no: the
// difference then counts as a mismatch, as before.
func pendingRepair(ctx context.Context, f *Facade, p *pools, routingKey string) bool {
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		qctx, cancel := context.WithTimeout(ctx, f.cfg.OtherTimeout)
		pending, err := ownSQL.RoutingKeyPending(qctx, p.side(side), routingKey)
		cancel()
		if err == nil && pending {
			return true
		}
	}
	return false
}

// shadowRechecks is how many times a difference is read again before it
// counts: after Config.ShadowRecheck, then after twice as long each time
// (100, 200, 400 and 800 ms by default), so that a write whose other side
// commits late (a loaded machine, a slow network) is not reported.
const shadowRechecks = 4

// recheckAgrees reads both sides again, up to shadowRechecks times with a
// doubling wait from Config.ShadowRecheck, and reports whether they came to
// agree. Each pair of reads has Config.OtherTimeout of its own.
func recheckAgrees[T any](ctx context.Context, f *Facade, p *pools, stage flags.Stage, fn ReadFunc[T], equal Comparator[T]) bool {
	auth := stage.Plan().Authoritative
	delay := f.cfg.ShadowRecheck
	for range shadowRechecks {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return false
		}
		delay *= 2
		rctx, cancel := context.WithTimeout(ctx, f.cfg.OtherTimeout)
		av, aerr := fn(rctx, reader(p, auth))
		ov, oerr := fn(rctx, reader(p, auth.Other()))
		cancel()
		failed := false
		for _, err := range []error{aerr, oerr} {
			failed = failed || (err != nil && !errors.Is(err, pgx.ErrNoRows))
		}
		if !failed && agree(answer[T]{av, aerr}, answer[T]{ov, oerr}, equal) {
			return true
		}
	}
	return false
}
