package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/sony/gobreaker/v2"

	"github.com/pgshift/pgshift/flags"
)

// BreakerState is the state of one side's circuit breaker (see Config.BreakerFailures).
type BreakerState string

// The states of a side's breaker.
const (
	// BreakerClosed: the side is written and read as the stage says.
	BreakerClosed BreakerState = "closed"
	// BreakerOpen: the side is known to be down or hung; writes skip it
	// (their rows go to the repair log) and shadow reads of it are dropped,
	// until a probe finds it answering.
	BreakerOpen BreakerState = "open"
	// BreakerProbing: a probe of the side is in flight; it is still skipped.
	BreakerProbing BreakerState = "probing"
)

// errSideOpen is the other side's part of a write that skipped it because
// its breaker is open: the write is left to the repair worker.
var errSideOpen = errors.New("dualwrite: the side's breaker is open (it was down or hung); the write is left to the repair worker")

// breaker keeps a facade off a side that is down or hung. A write or shadow
// read asks allow before it touches the other side and reports what came of
// it; after Config.BreakerFailures failures in a row that say the side
// itself is in trouble (connection refused or reset, the server shutting
// down: not an error the server answered with), or one timeout that a ping
// confirms, the breaker opens and the side is skipped. A timeout alone is
// not proof: a healthy side keeps a write waiting for a hot row's lock, or
// for a connection of a busy pool; so a timeout has the side pinged, on a
// connection of its own bounded by half of Config.OtherTimeout, and only a
// ping that gets no answer opens the breaker. Every Config.BreakerCooldown
// a probe (the same ping) tries the side; the first that answers closes the
// breaker. Only the probe runs while the breaker is half-open, so no caller
// waits on a side that is not known to answer.
type breaker struct {
	side     flags.Side
	failures int
	cooldown time.Duration
	timeout  time.Duration
	ping     func(ctx context.Context) error
	log      *slog.Logger

	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	// timedOut says the outcome being counted was a timeout, and lastErr
	// is that outcome; written and read under cb's lock (IsSuccessful, then
	// ReadyToTrip and OnStateChange).
	timedOut   bool
	lastErr    error
	opened     chan struct{} // signals the prober
	skipped    atomic.Int64  // calls that skipped the side
	probes     atomic.Int64
	confirming atomic.Bool // a ping after a timeout is in flight
}

func newBreaker(side flags.Side, failures int, cooldown, timeout time.Duration, ping func(context.Context) error, log *slog.Logger) *breaker {
	b := &breaker{side: side, failures: failures, cooldown: cooldown, timeout: timeout, ping: ping, log: log,
		opened: make(chan struct{}, 1)}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        side.String(),
		MaxRequests: 1,
		Timeout:     cooldown,
		IsSuccessful: func(err error) bool {
			b.timedOut, b.lastErr = errors.Is(err, errConfirmedTimeout), err
			return !sideFailure(err)
		},
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return b.timedOut || c.ConsecutiveFailures >= uint32(b.failures)
		},
		OnStateChange: b.changed,
	})
	return b
}

// allow reports whether a call may use the side now; a call that may not
// is counted as skipped. Only the probe uses the side while it is
// half-open.
func (b *breaker) allow() bool {
	if b.cb.State() != gobreaker.StateClosed {
		b.skipped.Add(1)
		return false
	}
	return true
}

// closed reports whether the side may be used now, without counting a
// skipped call: for the facade's own checks.
func (b *breaker) closed() bool { return b.cb.State() == gobreaker.StateClosed }

// report counts the outcome of a use of the side (nil: it answered), while
// the breaker is closed; outcomes of calls that started before it opened
// are dropped.
func (b *breaker) report(err error) {
	if b.cb.State() != gobreaker.StateClosed {
		return
	}
	if isTimeout(err) && !errors.Is(err, errConfirmedTimeout) {
		b.confirm(err)
		return
	}
	if done, aerr := b.cb.Allow(); aerr == nil {
		done(err)
	}
}

// errConfirmedTimeout marks a timeout after which a ping got no answer
// either: it opens the breaker at once.
var errConfirmedTimeout = errors.New("dualwrite: the side did not answer in time, nor a ping after it")

// confirm pings the side after a timeout, one ping at a time, and reports
// a confirmed timeout if the ping gets no answer.
func (b *breaker) confirm(timeout error) {
	if !b.confirming.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer b.confirming.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout/2)
		defer cancel()
		if err := b.ping(ctx); err != nil {
			b.report(fmt.Errorf("%w: %w (ping: %w)", errConfirmedTimeout, timeout, err))
		}
	}()
}

// state is the breaker's state for metrics and Stats.
func (b *breaker) state() BreakerState {
	switch b.cb.State() {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerProbing
	}
	return BreakerClosed
}

// changed logs a change of state and wakes the prober when the breaker
// opens. gobreaker calls it holding its lock: it must not call back.
func (b *breaker) changed(_ string, from, to gobreaker.State) {
	switch to {
	case gobreaker.StateOpen:
		if from == gobreaker.StateClosed {
			b.log.Warn("side is down or hung: writes skip it and leave their rows to the repair worker, shadow reads of it are dropped, until a probe finds it answering",
				"side", b.side, "probe_every", b.cooldown, "err", b.lastErr)
		}
		select {
		case b.opened <- struct{}{}:
		default:
		}
	case gobreaker.StateClosed:
		b.log.Info("side answers again: writes and shadow reads use it", "side", b.side)
	}
}

// run probes the side while the breaker is open, until ctx is done.
func (b *breaker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.opened:
		}
		for b.cb.State() != gobreaker.StateClosed {
			t := time.NewTimer(b.cooldown)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			b.probe(ctx)
		}
	}
}

// probe pings the side once, bounded by the other side's timeout, if the
// breaker lets a probe through now.
func (b *breaker) probe(ctx context.Context) {
	done, err := b.cb.Allow()
	if err != nil {
		return // still open, or a probe is in flight
	}
	b.probes.Add(1)
	pctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	// The probe reports within its bound whatever the ping does: a probe
	// that never reports would hold the half-open breaker's one slot.
	answered := make(chan error, 1)
	go func() { answered <- b.ping(pctx) }()
	var perr error
	select {
	case perr = <-answered:
	case <-pctx.Done():
		perr = pctx.Err()
	}
	if perr != nil && ctx.Err() == nil {
		b.log.Debug("probe of a skipped side failed", "side", b.side, "err", perr)
		perr = errors.Join(perr, errProbeFailed) // any failure keeps it open
	}
	done(perr)
}

// errProbeFailed marks a failed probe, which keeps the breaker open whatever
// the error was.
var errProbeFailed = errors.New("dualwrite: probe failed")

// sideFailure reports whether err says the side itself is in trouble (it
// refused or dropped the connection, did not answer in time, is shutting
// down or out of connections), rather than that it answered the statement
// with an error or that the write function refused the result.
func sideFailure(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errProbeFailed) || errors.Is(err, errConfirmedTimeout) || isTimeout(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 08: connection exception, 53: insufficient resources, 57P: operator
		// intervention (shutdown, crash), 58: system error.
		c := pgErr.Code
		return len(c) == 5 && (c[:2] == "08" || c[:2] == "53" || c[:3] == "57P" || c[:2] == "58")
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connErr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, net.ErrClosed)
}

// isTimeout reports whether err is a deadline that passed: the side did not
// answer in time.
func isTimeout(err error) bool {
	return err != nil && (errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err))
}
