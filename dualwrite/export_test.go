package dualwrite

import (
	"context"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// WithBeforeCommit returns c with a hook that runs before each transaction
// of a write sends its COMMIT, with the side, whether it is authoritative,
// and the server process id of its connection.
func WithBeforeCommit(c Config, fn func(side flags.Side, authoritative bool, pid uint32)) Config {
	c.hooks = &hooks{beforeCommit: fn}
	return c
}

// WithHeartbeatEvery returns c with the facade reporting itself in
// pgshift.facades every d instead of every 10 s.
func WithHeartbeatEvery(c Config, d time.Duration) Config {
	if c.hooks == nil {
		c.hooks = &hooks{}
	}
	c.hooks.heartbeatEvery = d
	return c
}

// AddShadowReads counts reads shadow reads of the user in ctx, as a shadow
// read of op does, without reading.
func (f *Facade) AddShadowReads(ctx context.Context, op string, reads, mismatches int64) {
	f.shadows.add(op, userOf(ctx), reads, mismatches)
}

// WithOnPass has r's worker call fn after each pass, with its side, its
// batch and the entries it took. Set before Start.
func WithOnPass(r *Repairer, fn func(side flags.Side, batch, took int)) { r.onPass = fn }
