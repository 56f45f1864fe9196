package dualwrite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// heartbeatInterval is how often a facade reports itself in pgshift.facades
// on each side it can reach.
const heartbeatInterval = 10 * time.Second

// heartbeat is a facade's report of itself in pgshift.facades, where
// `pgshift status` reads the state of every process's breakers: they live
// in the application's processes, which the operator's tools cannot ask.
type heartbeat struct {
	row pgshiftdb.RecordFacadeParams // the parts that do not change
}

func newHeartbeat() *heartbeat {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	var id [4]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	pid := os.Getpid()
	return &heartbeat{row: pgshiftdb.RecordFacadeParams{
		// One process may run several facades: the suffix tells them apart.
		Instance:  fmt.Sprintf("%s/%d/%s", host, pid, hex.EncodeToString(id[:])),
		Host:      host,
		Pid:       int32(pid),
		StartedAt: time.Now(),
	}}
}

// record writes the report on each side whose breaker is closed; a side it
// cannot write keeps the last one, which ages out of status's window.
func (h *heartbeat) record(ctx context.Context, f *Facade) {
	row := h.row
	row.BreakerOld, row.SkippedOld = string(f.breaker(flags.SideOld).state()), f.breaker(flags.SideOld).skipped.Load()
	row.BreakerNew, row.SkippedNew = string(f.breaker(flags.SideNew).state()), f.breaker(flags.SideNew).skipped.Load()
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		if !f.breaker(side).closed() {
			continue
		}
		if err := ownSQL.RecordFacade(ctx, f.pool(side), row); err != nil {
			f.log.Debug("recording this facade in pgshift.facades failed", "side", side, "err", err)
		}
	}
}

// forget deletes the report from both sides (the facade closes), with rows
// no process refreshed for a day.
func (h *heartbeat) forget(ctx context.Context, f *Facade) {
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		if !f.breaker(side).closed() {
			continue
		}
		if err := ownSQL.ForgetFacade(ctx, f.pool(side), h.row.Instance); err != nil {
			f.log.Debug("deleting this facade from pgshift.facades failed", "side", side, "err", err)
		}
	}
}

// run reports the facade every heartbeatInterval until ctx is done, then
// deletes the report. The first report waits one interval too: a facade's
// first seconds belong to the application's own calls.
func (h *heartbeat) run(ctx context.Context, f *Facade) {
	every := heartbeatInterval
	if f.cfg.hooks != nil && f.cfg.hooks.heartbeatEvery > 0 {
		every = f.cfg.hooks.heartbeatEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	bound := func(parent context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(parent, max(f.cfg.OtherTimeout, time.Second))
	}
	recorded := false
	for {
		select {
		case <-ctx.Done():
			if recorded {
				fctx, cancel := bound(context.WithoutCancel(ctx))
				h.forget(fctx, f)
				cancel()
			}
			return
		case <-tick.C:
			rctx, cancel := bound(ctx)
			h.record(rctx, f)
			cancel()
			recorded = true
		}
	}
}
