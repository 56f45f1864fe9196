package dualwrite

import (
	"context"
	"sync"

	"github.com/pgshift/pgshift/flags"
)

// A stage change can move a routing key's authority from one side to the
// other while the key still has writes on their way to the new authority:
// copies in flight (follows), or entries in the repair log. Served as it is,
// the new authority would answer without them (a read misses an
// acknowledged write) and act on a state without them (a child inserted
// under a parent whose delete is still in the log, which the repair then
// cascades away).
//
// So before a side serves a routing key as its authority for the first time
// (the first call of the key this Facade makes, every call after the key's
// authority changed, and, with a stage source that implements
// flags.Versioned, the first call of the key after the source's version
// changed: another process may have served the key under another stage
// meanwhile), the facade catches the key up: it waits for the
// key's follows, and when either side's log holds entries of the key it
// repairs them now, under the rows' locks, as the repair worker would. The
// calls of the key wait for it; other keys do not. A side that does not
// answer is not waited for: its entries are repaired when it is back, in the
// order the rows' locks gave them (see the package documentation).

// maxAuthorities bounds how many routing keys' authorities a Facade
// remembers; past it, it forgets them all, and each key is checked again on
// its next call.
const maxAuthorities = 1 << 17

// authorities remembers, per routing key, the side this Facade last served
// the key from after catching it up, and the version of the stage source
// (flags.Versioned) it did so under.
type authorities struct {
	mu   sync.Mutex
	seen map[string]authority
	busy map[string]chan struct{} // keys being caught up; closed when done
}

type authority struct {
	side    flags.Side
	version uint64
}

func newAuthorities() *authorities {
	return &authorities{seen: map[string]authority{}, busy: map[string]chan struct{}{}}
}

// ensure runs catchUp for key unless key was last caught up for auth;
// concurrent calls of one key wait for a catch-up in progress.
func (a *authorities) ensure(ctx context.Context, key string, auth authority, catchUp func() error) error {
	for {
		a.mu.Lock()
		if s, ok := a.seen[key]; ok && s == auth {
			a.mu.Unlock()
			return nil
		}
		ch := a.busy[key]
		if ch == nil {
			break // a.mu held: this call catches up
		}
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	a.busy[key] = ch
	a.mu.Unlock()
	err := catchUp()
	a.mu.Lock()
	delete(a.busy, key)
	if err == nil {
		if len(a.seen) >= maxAuthorities {
			clear(a.seen)
		}
		a.seen[key] = auth
	}
	close(ch)
	a.mu.Unlock()
	return err
}

// caughtUp makes sure the side stage makes authoritative for the caller's
// routing key holds the key's acknowledged writes before it serves the
// call. Calls without a routing key, and Op.Global ones (decided by another
// source), are not caught up.
func (f *Facade) caughtUp(ctx context.Context, op Op, stage flags.Stage) error {
	key := flags.RoutingKey(ctx)
	if op.Global || key == "" {
		return nil
	}
	auth := authority{side: stage.Plan().Authoritative}
	if v, ok := f.cfg.Stages.(flags.Versioned); ok {
		auth.version = v.Version()
	}
	return f.authority.ensure(ctx, key, auth, func() error { return f.catchUp(ctx, key) })
}

// catchUp waits for key's follows and repairs key's entries on both sides.
// Only the caller's cancellation fails it: a side that does not answer, or
// an entry that cannot be applied yet, is logged and left to the repair
// worker.
func (f *Facade) catchUp(ctx context.Context, key string) error {
	f.follows.wait(key, f.cfg.OtherTimeout)
	cctx, cancel := context.WithTimeout(ctx, f.cfg.OtherTimeout)
	defer cancel()
	var found [2]bool
	var errs [2]error
	var wg sync.WaitGroup
	for i, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		wg.Go(func() { found[i], errs[i] = ownSQL.KeyHasEntries(cctx, f.pool(side), key) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i, err := range errs {
		if err != nil {
			f.log.Warn("cannot check a routing key's repair-log entries before its authority serves it; its writes there are repaired when the side is back",
				"side", []flags.Side{flags.SideOld, flags.SideNew}[i], "routing_key", key, "err", err)
		}
	}
	if !found[0] && !found[1] {
		return nil
	}
	f.m.catchUps.Add(ctx, 1)
	remain, err := f.repairer.catchUp(cctx, key)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		f.log.Warn("cannot repair a routing key's entries before its authority serves it; left to the repair worker",
			"routing_key", key, "err", err)
	case remain:
		f.log.Warn("some of a routing key's entries could not be repaired before its authority serves it; left to the repair worker (see pgshift.repair_log.last_error)",
			"routing_key", key)
	}
	return nil
}
