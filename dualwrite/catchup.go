package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
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
// calls of the key wait for it; other keys do not. A previous authority
// that does not answer is not waited for: the key's calls are refused
// (ErrNotCaughtUp) until it answers (see the package documentation for the
// exceptions).

// The catch-up also waits for the key's writes this Facade has in flight
// under the previous authority (they were served before the change and
// commit after it, their entries with them), and a catch-up that could not
// finish (a side did not answer, an entry could not be applied yet) does not
// count: the key's next call catches it up again.

// ErrNotCaughtUp is returned by a call of a routing key whose authoritative
// side changed (a flag flip, a rollback) while the previous authoritative
// side does not answer (it is down, hung, or its breaker is open): that
// side's repair log may hold acknowledged writes of the key the new
// authority lacks, and serving the key without them would read, and write
// over, an older state. Nothing was read or written. The key's calls
// succeed again once the previous side answers and the key's entries are
// repaired; calls of keys whose authority did not move are not affected.
var ErrNotCaughtUp = errors.New("dualwrite: the routing key's authority moved and its previous authoritative side does not answer; nothing was read or written, retry when that side is back")

// maxAuthorities bounds how many routing keys' authorities a Facade
// remembers; past it, it forgets them all, and each key is checked again on
// its next call.
const maxAuthorities = 1 << 17

// authorities remembers, per routing key, the side this Facade last served
// the key from after catching it up, and the version of the stage source
// (flags.Versioned) it did so under; and counts the key's writes in flight
// per authoritative side.
type authorities struct {
	mu      sync.Mutex
	seen    map[string]authority
	busy    map[string]chan struct{} // keys being caught up; closed when done
	running map[string]*inFlight
}

type authority struct {
	side    flags.Side
	version uint64
}

// inFlight counts one routing key's writes in flight per authoritative
// side; idle[side] is closed when that count drops to zero.
type inFlight struct {
	n    [2]int
	idle [2]chan struct{}
}

func newAuthorities() *authorities {
	return &authorities{seen: map[string]authority{}, busy: map[string]chan struct{}{}, running: map[string]*inFlight{}}
}

// ensure runs catchUp for key unless key was last caught up for auth;
// concurrent calls of one key wait for a catch-up in progress. A catch-up
// that returns complete false lets this call go on but is run again by the
// key's next call. With write set the call counts as one of key's writes in
// flight under auth.side until release is called.
func (a *authorities) ensure(ctx context.Context, key string, auth authority, write bool, catchUp func() (complete bool, err error)) (release func(), err error) {
	for {
		a.mu.Lock()
		ch := a.busy[key]
		if ch == nil {
			if s, ok := a.seen[key]; ok && s == auth {
				defer a.mu.Unlock()
				return a.start(key, auth.side, write), nil
			}
			break // a.mu held: this call catches up
		}
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ch := make(chan struct{})
	a.busy[key] = ch
	a.mu.Unlock()
	complete, err := catchUp()
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.busy, key)
	close(ch)
	switch {
	case err != nil:
		return nil, err
	case complete:
		if len(a.seen) >= maxAuthorities {
			clear(a.seen)
		}
		a.seen[key] = auth
	default:
		delete(a.seen, key)
	}
	return a.start(key, auth.side, write), nil
}

// forget makes key's next call catch it up again: another process served
// it under the other authority since (its fence said so).
func (a *authorities) forget(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.seen, key)
}

// start counts a write of key in flight under side (a.mu held) and returns
// the function that ends it.
func (a *authorities) start(key string, side flags.Side, write bool) func() {
	if !write {
		return func() {}
	}
	fl := a.running[key]
	if fl == nil {
		fl = &inFlight{}
		a.running[key] = fl
	}
	i := sideIndex(side)
	if fl.n[i] == 0 {
		fl.idle[i] = make(chan struct{})
	}
	fl.n[i]++
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			fl.n[i]--
			if fl.n[i] == 0 {
				close(fl.idle[i])
				fl.idle[i] = nil
				if fl.n[1-i] == 0 {
					delete(a.running, key)
				}
			}
		})
	}
}

// settled waits until key has no write in flight under side: writes served
// before the key's authority moved away from side.
func (a *authorities) settled(ctx context.Context, key string, side flags.Side) error {
	a.mu.Lock()
	var idle chan struct{}
	if fl := a.running[key]; fl != nil {
		idle = fl.idle[sideIndex(side)]
	}
	a.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// caughtUp makes sure the side stage makes authoritative for the caller's
// routing key holds the key's acknowledged writes before it serves the
// call; a write calls release when it has ended. Calls without a routing
// key, and Op.Global ones (decided by another source), are not caught up.
func (f *Facade) caughtUp(ctx context.Context, op Op, stage flags.Stage, write bool) (release func(), err error) {
	key := flags.RoutingKey(ctx)
	if op.Global || key == "" {
		return func() {}, nil
	}
	auth := authority{side: stage.Plan().Authoritative}
	if v, ok := f.cfg.Stages.(flags.Versioned); ok {
		auth.version = v.Version()
	}
	return f.authority.ensure(ctx, key, auth, write, func() (bool, error) {
		return f.catchUp(ctx, key, auth.side, stage.Plan().WriteOther)
	})
}

// catchUp waits for key's writes in flight under the other authority and
// for key's follows, then moves the key's authority to auth on new (see
// pgshift.key_authority): when new records another side, or the same one
// unsettled, it takes the authority alone (which waits for the key's writes
// in flight in every process) and records auth unsettled, refusing every
// write of the key; it repairs key's entries on both sides; and it records
// auth settled. It fails with ErrNotCaughtUp when the key's previous
// authority does not answer, and with the caller's cancellation; otherwise
// a side that does not answer (or whose breaker is open), an authority
// other processes' writes hold longer than the lock wait, or an entry that
// cannot be applied yet, is logged and left to the repair worker, and the
// catch-up is not complete (the key's next call tries again).
func (f *Facade) catchUp(ctx context.Context, key string, auth flags.Side, writesBoth bool) (complete bool, err error) {
	if err := f.authority.settled(ctx, key, auth.Other()); err != nil {
		return false, err
	}
	f.follows.wait(key, f.cfg.OtherTimeout)
	if auth != lockSide && !f.breaker(lockSide).closed() {
		// The fence is on new: with new out of reach, old's writes go on
		// without it (see the package documentation), for the keys new
		// has not served since old last caught them up.
		return false, f.oldServes(ctx, key)
	}
	moving, from, err := f.moveAuthority(ctx, key, auth, false)
	if err != nil {
		if auth != lockSide && ctx.Err() == nil {
			if err := f.oldServes(ctx, key); err != nil {
				return false, err
			}
		}
		return false, f.authorityError(ctx, key, auth, err)
	}
	complete, answered, err := f.repairKey(ctx, key, auth)
	if err != nil {
		return false, err
	}
	switch {
	case !moving || !answered[sideIndex(auth)]:
		// Settled already, or auth did not answer: the key's writes fail
		// there anyway, and its next call catches it up.
	case !answered[sideIndex(auth.Other())] && (from != "" || auth == lockSide && writesBoth):
		// The key was served from the other side, which did not answer:
		// its log may hold acknowledged writes auth has not seen, and a
		// write served on auth without them would act on an older state
		// (an update of a row auth lacks, whose entry repair then copies
		// back as "absent"), or take a unique value such a write holds.
		// That holds for a key new never recorded too, while old is
		// still written: its writes under old that went on without new
		// (on old's fence) left their entries on old alone (seed 21152).
		// A key's first move is served without the previous side only
		// into complete (old no longer written; the gate into it wants
		// both logs empty) and to old (every write under new's authority
		// needs new's record). The record stays unsettled, so every
		// process's writes of the key are refused by the fence, and this
		// call is refused too.
		f.keyWarn.warn(key, "a routing key's authority moved while its previous authority does not answer; the key's calls are refused (ErrNotCaughtUp) until that side answers and its entries are repaired",
			"side", auth, "previous", auth.Other())
		return false, ErrNotCaughtUp
	default:
		// The key is served now: the other side answered (its entries
		// were repaired, or those left could not be applied yet and go to
		// the repair worker), or this is the key's first move (see above).
		if _, _, err := f.moveAuthority(ctx, key, auth, true); err != nil {
			return false, f.authorityError(ctx, key, auth, err)
		}
	}
	return complete, nil
}

// authorityError is catchUp's outcome when key's authority on new could
// not be read or recorded: the caller's cancellation, or a warning and an
// incomplete catch-up.
func (f *Facade) authorityError(ctx context.Context, key string, auth flags.Side, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f.keyWarn.warn(key, "cannot move a routing key's authority on new; until it moves, the key's dual writes are refused (ErrRowBusy once retries run out), and its next call tries again",
		"side", auth, "err", err)
	return nil
}

// moveAuthority records auth as key's authority on new, unless new records
// it settled already (one plain read then): under the key's authority taken
// alone, settled, or unsettled (a move under way: every write of the key is
// refused) when settle is false. With settle set it records nothing unless
// new records auth unsettled (another process may have moved the key
// meanwhile). moving reports whether new did not record auth settled, and
// from the side it recorded before the move (empty when none: the key's first
// catch-up). A move takes two round trips: BEGIN, the lock and the read; the
// record and COMMIT.
func (f *Facade) moveAuthority(ctx context.Context, key string, auth flags.Side, settle bool) (moving bool, from string, err error) {
	// The lock waits at most lockWait; the rest of the bound is for the
	// few small statements on a busy server.
	fctx, cancel := context.WithTimeout(ctx, 2*f.cfg.OtherTimeout)
	defer cancel()
	pool := f.pool(lockSide)
	if !settle {
		rec, err := ownSQL.KeyAuthority(fctx, pool, key)
		f.breaker(lockSide).report(err)
		if err != nil {
			return false, "", fmt.Errorf("read the routing key's authority on new: %w", err)
		}
		if rec.Side == auth.String() && rec.Settled {
			// Any write under the other side is refused by the record, and
			// whoever settled it waited for those admitted before.
			return false, "", nil
		}
	}
	conn, err := pool.Acquire(fctx)
	f.breaker(lockSide).report(err)
	if err != nil {
		return false, "", fmt.Errorf("connect to new: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			// The transaction's state is unknown: the connection goes.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
		conn.Release()
	}()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(pgshiftdb.SetLockTimeoutSQL, strconv.FormatInt(lockWait(f.cfg.OtherTimeout).Milliseconds(), 10))
	b.Queue(pgshiftdb.LockAuthoritySQL, key)
	b.Queue(pgshiftdb.KeyAuthoritySQL, key)
	var rec pgshiftdb.KeyAuthorityRow
	br := conn.SendBatch(fctx, b)
	for range 3 {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if err == nil {
		err = br.QueryRow().Scan(&rec.Side, &rec.Settled)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, "", fmt.Errorf("take the routing key's authority on new: %w", err)
	}
	moving = rec.Side != auth.String() || !rec.Settled
	end := "COMMIT"
	switch {
	case !moving, !settle && rec.Side == auth.String():
		// Nothing to record: settled, or recorded moving already (a
		// catch-up that did not finish); the lock waited for the key's
		// writes in flight all the same.
		end = "ROLLBACK"
	case settle && (rec.Side != auth.String() || rec.Settled):
		moving, end = false, "ROLLBACK"
		err = fmt.Errorf("another process moved the routing key's authority to %s meanwhile", rec.Side)
	}
	switch {
	case moving && !settle && auth == lockSide:
		// Before new may serve the key: old's writes of it that went on
		// without new are waited for, and later ones refused.
		if merr := f.markOld(fctx, key, auth); merr != nil && (pgErrorCode(merr) != "" || isTimeout(merr)) {
			// Such a write may hold the mark (old answered that the lock
			// was busy, or too slowly to tell): moving now could miss
			// its entries. Old down (its breaker open, connections
			// refused or cut) holds no write in flight: the move goes on
			// unmarked.
			moving, end, err = false, "ROLLBACK", fmt.Errorf("mark the routing key on old: %w", merr)
		}
	case settle && end == "COMMIT" && auth != lockSide:
		_ = f.markOld(fctx, key, auth)
	}
	b = &pgx.Batch{}
	if end == "COMMIT" {
		p := pgshiftdb.RecordAuthorityParams{RoutingKey: key, Side: auth.String(), Settled: settle}
		b.Queue(pgshiftdb.RecordAuthoritySQL, p.Args()...)
	}
	b.Queue(end)
	if cerr := conn.SendBatch(fctx, b).Close(); cerr != nil {
		return false, "", fmt.Errorf("record the routing key's authority on new: %w", cerr)
	}
	committed = true
	return moving, rec.Side, err
}

// markOld records on old whether new may have served key since old last
// caught it up: side new before new may serve it, side old once old caught
// it up from new's log. It runs while the caller holds key's authority on
// new alone, so the marks follow the order of the moves, and takes the
// key's mark on old alone, which waits (at most the lock wait) for the
// writes under old's authority that went on without new (pgshift.fence_old)
// and commits before any later one reads it. A mark that fails is logged
// and returned: a move to new whose mark old refused or did not answer in
// time does not happen, one to an old that is down goes on unmarked (and
// the catch-up, which cannot read old's log either, refuses the key until
// old answers and is marked), and a key whose mark says new while old
// caught it up is refused only while new is out of reach.
func (f *Facade) markOld(ctx context.Context, key string, auth flags.Side) error {
	old := flags.SideOld
	err := errSideOpen
	if f.breaker(old).closed() {
		mctx, cancel := context.WithTimeout(ctx, f.cfg.OtherTimeout)
		b := &pgx.Batch{} // one implicit transaction
		b.Queue(pgshiftdb.SetLockTimeoutSQL, strconv.FormatInt(lockWait(f.cfg.OtherTimeout).Milliseconds(), 10))
		b.Queue(pgshiftdb.LockAuthoritySQL, key)
		b.Queue(pgshiftdb.RecordAuthoritySQL, pgshiftdb.RecordAuthorityParams{RoutingKey: key, Side: auth.String(), Settled: true}.Args()...)
		err = f.pool(old).SendBatch(mctx, b).Close()
		cancel()
		f.breaker(old).report(err)
	}
	if err != nil {
		f.log.Debug("cannot record on old which side serves a routing key", "routing_key", key, "side", auth, "err", err)
	}
	return err
}

// remarkOld clears a stale mark on old: old's fence refused a write of key
// under old's authority, and new records old settled for it (a move back
// to old whose mark on old failed leaves old saying new). Under the key's
// authority on new taken alone, so that no move to new is under way, it
// marks old again when new's record still says old settled; otherwise the
// refusal was right and nothing changes. Failures are left to the next
// refusal.
func (f *Facade) remarkOld(ctx context.Context, key string) {
	fctx, cancel := context.WithTimeout(ctx, 2*f.cfg.OtherTimeout)
	defer cancel()
	tx, err := f.pool(lockSide).Begin(fctx)
	if err != nil {
		return
	}
	defer rollbackBounded(fctx, tx)
	b := &pgx.Batch{}
	b.Queue(pgshiftdb.SetLockTimeoutSQL, strconv.FormatInt(lockWait(f.cfg.OtherTimeout).Milliseconds(), 10))
	b.Queue(pgshiftdb.LockAuthoritySQL, key)
	if err := tx.SendBatch(fctx, b).Close(); err != nil {
		return
	}
	rec, err := ownSQL.KeyAuthority(fctx, tx, key)
	if err != nil || rec.Side != flags.SideOld.String() || !rec.Settled {
		return
	}
	if err := f.markOld(fctx, key, flags.SideOld); err == nil {
		f.log.Debug("marked a routing key on old again: its mark said new while new recorded old settled", "routing_key", key)
	}
}

// oldServes is the catch-up of a key whose authority is old while new is
// out of reach: nil when old's mark (see markOld) says new has not served
// the key since old last caught it up, or old does not answer (the key's
// calls fail there anyway); ErrNotCaughtUp when new may hold acknowledged
// writes of the key in its log.
func (f *Facade) oldServes(ctx context.Context, key string) error {
	old := flags.SideOld
	rctx, cancel := context.WithTimeout(ctx, f.cfg.OtherTimeout)
	defer cancel()
	rec, err := ownSQL.KeyAuthority(rctx, f.pool(old), key)
	f.breaker(old).report(err)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil || rec.Side != flags.SideNew.String():
		return nil
	}
	f.keyWarn.warn(key, "a routing key served from new is now served from old while new does not answer; the key's calls are refused (ErrNotCaughtUp) until new answers and its entries are repaired")
	return ErrNotCaughtUp
}

// repairKey repairs key's entries on both sides, under the rows' locks, and
// reports whether none is left, and which sides answered (indexed by
// sideIndex). Auth, the key's new authority, is asked even when its breaker
// is open: the key's calls go to it anyway, and its entries' copies must be
// there before they do.
func (f *Facade) repairKey(ctx context.Context, key string, auth flags.Side) (complete bool, answered [2]bool, err error) {
	sides := []flags.Side{flags.SideOld, flags.SideNew}
	if !f.breaker(auth.Other()).closed() {
		// Repair needs both sides: the key's entries wait for the side.
		answered[sideIndex(auth)] = true
		return false, answered, nil
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.OtherTimeout)
	defer cancel()
	var found [2]bool
	var errs [2]error
	var wg sync.WaitGroup
	for i, side := range sides {
		wg.Go(func() { found[i], errs[i] = ownSQL.KeyHasEntries(cctx, f.pool(side), key) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false, answered, ctx.Err()
	}
	for i, err := range errs {
		f.breaker(sides[i]).report(err)
		answered[sideIndex(sides[i])] = err == nil
		if err != nil {
			f.keyWarn.warn(key, "cannot check a routing key's repair-log entries before its authority serves it; its writes are repaired when the side is back, and the key's next call checks again",
				"side", sides[i], "err", err)
		}
	}
	if !answered[0] || !answered[1] {
		return false, answered, nil
	}
	if !found[0] && !found[1] {
		return true, answered, nil
	}
	f.m.catchUps.Add(ctx, 1)
	remain, err := f.repairer.catchUp(cctx, key)
	switch {
	case ctx.Err() != nil:
		return false, [2]bool{}, ctx.Err()
	case err != nil:
		// Which side failed is not known: neither counts as answered, and
		// the key's next call catches it up again.
		f.keyWarn.warn(key, "cannot repair a routing key's entries before its authority serves it; the key's next call tries again, and the repair worker meanwhile",
			"err", err)
		return false, [2]bool{}, nil
	case remain:
		f.keyWarn.warn(key, "some of a routing key's entries could not be repaired before its authority serves it; left to the repair worker (see pgshift.repair_log.last_error)")
		return false, answered, nil
	}
	return true, answered, nil
}
