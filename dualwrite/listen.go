package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/flags"
)

// ListenConfig configures Listen. Old, New, Channel and Handle are required.
type ListenConfig struct {
	// Old and New say how to reach the two databases for LISTEN. Listen
	// holds one connection of its own on each: LISTEN is session state, so
	// these must not go through a pooler in transaction mode (connect to
	// the servers, or to a PgBouncer in session mode).
	Old, New *pgx.ConnConfig
	// Channel is the channel listened on.
	Channel string
	// Handle receives each notification once, one at a time.
	Handle func(ctx context.Context, n Notification)
	// EchoWindow is how long a delivered notification is remembered, so
	// that its copy from the other side is recognised and dropped: longer
	// than a write takes to reach the other side (OtherTimeout). 10s when
	// zero.
	EchoWindow time.Duration
	// RetryInterval is the wait before reconnecting a side whose connection
	// failed; 1s when zero.
	RetryInterval time.Duration
	// Logger receives connection failures (each side's first, and its
	// recovery); slog.Default() when nil.
	Logger *slog.Logger
}

// Notification is one NOTIFY, as Listen delivers it.
type Notification struct {
	Channel, Payload string
	// Side is the database that delivered it (the first to).
	Side flags.Side
}

// Listen delivers the notifications of one channel sent in writes through
// the facade, each once, whatever the migration stage and across authority
// flips: a background consumer follows the migration without being told.
//
// A NOTIFY in a write function runs on every side the stage writes, so in
// the dual stages each notification arrives twice, once from each side, in
// the order the sides commit; in off and complete it arrives once. Listen
// listens on both sides all the time, delivers the first copy of a payload
// and drops its echo from the other side (it counts copies per payload and
// side within EchoWindow), so no notification is lost or delivered twice
// while some writers already see a flip and others not yet. What it needs:
// payloads that tell notifications apart (an id, a row's key and version):
// two notifications of the same payload within EchoWindow whose writes each
// reached only one side, different ones, are taken for one and its echo.
// Notifications are hints, as PostgreSQL's are: one sent while Listen was
// reconnecting a side is lost there, and one of a write whose authoritative
// side then failed can be delivered; read the row before acting on it.
//
// Listen blocks until ctx is done and returns ctx's error, or a
// configuration error at once.
func Listen(ctx context.Context, cfg ListenConfig) error {
	switch {
	case cfg.Old == nil || cfg.New == nil:
		return errors.New("dualwrite: ListenConfig.Old and ListenConfig.New are required: connection configs of both databases (not through a transaction-mode pooler)")
	case cfg.Channel == "":
		return errors.New("dualwrite: ListenConfig.Channel is required")
	case cfg.Handle == nil:
		return errors.New("dualwrite: ListenConfig.Handle is required")
	}
	if cfg.EchoWindow <= 0 {
		cfg.EchoWindow = 10 * time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("component", "listen", "channel", cfg.Channel)
	arrivals := make(chan Notification)
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		conf := cfg.Old
		if side == flags.SideNew {
			conf = cfg.New
		}
		go listenSide(ctx, conf, side, cfg.Channel, cfg.RetryInterval, log, arrivals)
	}
	seen := echoes{window: cfg.EchoWindow, counts: map[string]*echoCount{}}
	sweep := time.NewTicker(cfg.EchoWindow)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-sweep.C:
			seen.forget(now)
		case n := <-arrivals:
			if seen.first(n, time.Now()) {
				cfg.Handle(ctx, n)
			}
		}
	}
}

// listenSide keeps a LISTEN connection on one side and forwards what it
// receives, reconnecting after failures, until ctx is done.
func listenSide(ctx context.Context, conf *pgx.ConnConfig, side flags.Side, channel string, retry time.Duration, log *slog.Logger, out chan<- Notification) {
	failing := false
	for ctx.Err() == nil {
		err := func() error {
			conn, err := pgx.ConnectConfig(ctx, conf)
			if err != nil {
				return err
			}
			defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
				return err
			}
			if failing {
				log.Info("listening again", "side", side)
				failing = false
			}
			for {
				n, err := conn.WaitForNotification(ctx)
				if err != nil {
					return err
				}
				select {
				case out <- Notification{Channel: n.Channel, Payload: n.Payload, Side: side}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}()
		if ctx.Err() != nil {
			return
		}
		if !failing {
			log.Warn("listen connection failed; notifications sent meanwhile on this side are lost", "side", side,
				"err", fmt.Errorf("%w", err))
			failing = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// echoes counts, per payload, the copies each side delivered within the
// window: a copy is new when its side has now delivered more of the payload
// than the other side has.
type echoes struct {
	window time.Duration
	counts map[string]*echoCount
}

type echoCount struct {
	old, new int
	last     time.Time
}

func (e *echoes) first(n Notification, now time.Time) bool {
	c := e.counts[n.Payload]
	if c == nil {
		c = &echoCount{}
		e.counts[n.Payload] = c
	}
	c.last = now
	if n.Side == flags.SideNew {
		c.new++
		return c.new > c.old
	}
	c.old++
	return c.old > c.new
}

// forget drops the payloads not seen within the window.
func (e *echoes) forget(now time.Time) {
	for p, c := range e.counts {
		if now.Sub(c.last) > e.window {
			delete(e.counts, p)
		}
	}
}
