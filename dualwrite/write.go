package dualwrite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshift/pgshift/flags"
)

// ErrDiverged is returned by a write function running on the other side when
// that side's result shows it does not hold what the authoritative side holds
// (an update or delete that found no row, say, because the row has not been
// backfilled yet). The facade then leaves the row to the repair worker.
var ErrDiverged = errors.New("dualwrite: other side differs from the authoritative side")

// errUnlocked is the other side's failure when it is the canonical side and
// could not take the rows' locks: it is then not written at all.
var errUnlocked = errors.New("dualwrite: the canonical side did not take the rows' locks in time; it is left to the repair worker")

// ErrRowBusy is returned by a write in dualwrite or shadow when another write
// (one made under another stage, or the repair worker) held one of its rows'
// locks on new longer than OtherTimeout allows for, and by a dual write whose
// routing key other processes kept serving under the other authority (see
// the package documentation). Nothing was written on either side: retry the
// write.
var ErrRowBusy = errors.New("dualwrite: a row of this write is held by another write; nothing was written, retry")

// errAuthorityMoved is a dual write's failure when new records its routing
// key as served from the other side (pgshift.fence): another process sees
// another stage for the key, or the key was never caught up. Nothing was
// written; the write catches the key up and runs again, and the caller gets
// ErrRowBusy when that keeps happening.
var errAuthorityMoved = fmt.Errorf("%w (the routing key's authority is recorded on new for the other side: another process serves it under another stage)", ErrRowBusy)

// errAuthFailed is the other side's outcome in a NewRows write when the
// authoritative side failed before its COMMIT: the other side rolls back.
var errAuthFailed = errors.New("dualwrite: the authoritative side failed; the other side's copy is rolled back")

// WriteFunc is one write, run once per side that the stage writes. On the
// authoritative side prev is nil; on the other side it points to the
// authoritative run's result, so values the authoritative side assigned
// (identity keys from RETURNING) can be written as they are. With
// Op.NewRows both sides run at once and prev is nil on both.
type WriteFunc[T any] func(ctx context.Context, tx *Tx, prev *T) (T, error)

// write is one call of Write: what its transactions share.
type write struct {
	f          *Facade
	pools      *pools // the generation the call holds
	op         Op
	routingKey string
	auth       flags.Side // the side the stage makes authoritative
	// logs says the stage writes both sides: touched rows are locked and
	// logged.
	logs bool
	// eager says the sides commit independently (NewRows, or the
	// authoritative side is new), so the authoritative side's log records
	// go with its statements rather than only when the other side failed.
	eager bool
	// lockTx is the transaction on the canonical side (lockSide) that takes
	// the rows' locks: the authoritative one or the other side's; nil when
	// nothing is locked.
	lockTx *Tx
	locked int // the authoritative Tx's touched[:locked] are locked
	// lockFailed says the canonical side, being the other side, could not
	// take the locks; it is then not written.
	lockFailed bool
	// committing says a COMMIT of the write was sent on some side: from
	// then on a failed write is not run again.
	committing atomic.Bool
	// otherSkipped says the other side's breaker was open when the write
	// began: the other side is not touched at all, the write's rows are
	// left to the repair worker.
	otherSkipped bool
	// lateKeys says the write function Touched a row after a statement
	// (its key came from RETURNING): the other side may make other keys.
	lateKeys bool
	// fencePending says the fence (pgshift.fence) is queued on the
	// canonical side, the other side here, and not sent yet; moved says new
	// answered that the routing key's authority is recorded for the other
	// side.
	fencePending bool
	moved        atomic.Bool
	// oldRefused says old's fence (pgshift.fence_old) refused the write:
	// old's mark says new may serve the routing key.
	oldRefused atomic.Bool
	// cutOff says a write under old's authority goes on without new's
	// fence (new did not answer it, its transaction broke, or new was
	// skipped). Every write under old's authority takes old's fence
	// (pgshift.fence_old), queued once (oldFenced) on the authoritative Tx:
	// with its first round trip there, or, for NewRows (whose other side
	// runs at the same time), with its COMMIT unless cut off.
	cutOff    atomic.Bool
	oldFenced bool
	// fenced says new answered the fence (a NewRows write's, sent with new's
	// statement while old runs its own: old's COMMIT takes old's fence
	// unless new's answered first).
	fenced atomic.Bool
	// fenceDone is closed when a fence sent ahead of the authoritative
	// side's first statement (fenceAhead) has its answer, fenceErr.
	fenceDone chan struct{}
	fenceErr  error

	copyMu      sync.Mutex   // the sides' Txs run at once with NewRows
	copySources []copySource // the CopyFromSources the Txs have read
	copyCounts  []int64      // rows each authoritative CopyFrom wrote, in order
}

func (w *write) newTx(side flags.Side, authoritative bool) *Tx {
	return &Tx{w: w, side: side, authoritative: authoritative, pool: w.pools.side(side)}
}

// lockTouched takes, on the canonical side, the locks of the rows atx (the
// authoritative Tx) touched and has not locked yet, and gives them their
// order. When atx is on the canonical side the locks go with its next
// statement; otherwise its statement must wait for them, so they are taken
// now, bounded by OtherTimeout: the canonical side is the other side then.
// If it does not answer in time the write goes on without it (the other side
// is left to the repair worker); if it answers that another write holds a
// row longer than that, the write fails with ErrRowBusy before anything
// commits: going on without the lock would let repair order it behind the
// write that held it. The routing key's fence, queued first on the
// canonical side, goes with the first of these round trips (or was sent
// ahead, fenceAhead); a refused fence fails the write the same way.
func (w *write) lockTouched(ctx context.Context, atx *Tx) error {
	if w.lockTx == nil || w.otherSkipped {
		return nil
	}
	rows := w.locked < len(atx.touched)
	if !rows && (w.lockTx == atx || !w.fencePending) {
		return nil
	}
	if w.lockTx == atx {
		from, to := w.locked, len(atx.touched)
		w.locked = to
		atx.queueLock(atx.touched[from:to], 0, orderOf(atx.touched[from:to]))
		return nil
	}
	// A fence sent ahead is answered before anything else goes to new.
	if err := w.awaitFence(); err != nil || w.lockFailed {
		return err
	}
	if rows {
		from, to := w.locked, len(atx.touched)
		w.locked = to
		w.lockTx.queueLock(atx.touched[from:to], lockWait(w.f.cfg.OtherTimeout), orderOf(atx.touched[from:to]))
	}
	w.fencePending = false
	return w.flushLocks(ctx)
}

// fenceAhead sends the routing key's fence, queued on the other side (new),
// now and without waiting, when the authoritative side's statement is about
// to go out with no rows to lock before it (their keys come from the
// statement): its answer is awaited before the authoritative side commits
// (awaitFence), so it costs that side no round trip of its own.
func (w *write) fenceAhead(ctx context.Context, atx *Tx) {
	if !w.fencePending || w.lockTx == atx || w.lockFailed || w.otherSkipped || w.locked < len(atx.touched) {
		return
	}
	w.fencePending = false
	w.fenceDone = make(chan struct{})
	go func() {
		defer close(w.fenceDone)
		w.fenceErr = w.flushLocks(ctx)
	}()
}

// awaitFence waits for the fence fenceAhead sent, if any, and returns its
// outcome.
func (w *write) awaitFence() error {
	if w.fenceDone == nil {
		return nil
	}
	<-w.fenceDone
	w.fenceDone = nil
	return w.fenceErr
}

// flushLocks sends what is queued on the canonical side, the other side
// here (the fence, the rows' locks), bounded by OtherTimeout, and sorts out
// its answer: a refused fence or a busy row fail the write (nothing has
// committed), a side that did not answer is left behind (lockFailed).
func (w *write) flushLocks(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, w.f.cfg.OtherTimeout)
	defer cancel()
	err := w.lockTx.flush(lctx)
	if err != nil && ctx.Err() != nil {
		w.lockFailed = true
		return ctx.Err()
	}
	if moved, busy := w.moved.Load(), pgErrorCode(err) == pgerrcode.LockNotAvailable; moved || busy {
		// The side answered: it is healthy; the routing key's authority is
		// recorded for the other side, or a row (or the key's authority,
		// while another process moves it) is busy.
		w.f.breaker(w.lockTx.side).report(nil)
		w.lockFailed = true
		if moved {
			return fmt.Errorf("%s: %w", w.op.Name, err)
		}
		return fmt.Errorf("%s: %w (%w)", w.op.Name, ErrRowBusy, err)
	}
	w.f.breaker(w.lockTx.side).report(err)
	if err != nil {
		w.lockFailed = true
		if w.fences() {
			// Whether or not the fence had answered, the transaction that
			// held it on new is gone: old's own fence takes its place.
			w.cutOff.Store(true)
		}
		w.f.log.Debug("the other side did not lock the rows; the write goes on without it", "op", w.op.Name,
			"routing_key", w.routingKey, "err", err)
	}
	return nil
}

// fenceOld queues pgshift.fence_old on atx, the authoritative Tx on old,
// once: with atx's next round trip (committing says it carries the
// COMMIT). A catch-up that moves the key to new meanwhile marks it on old
// first; the mark then either waits for this write's COMMIT (and the
// catch-up reads its entries) or refuses it (errAuthorityMoved, nothing
// committed). New's fence alone is not enough: the write's transaction on
// new, which holds it, ends when the caller stops waiting (or breaks),
// while old may still be running a COMMIT it was sent (history seed 73766,
// TestACommitLandingAfterItsCallerGaveUpNeverOutrunsAMoveToNew). A NewRows
// write takes it with its COMMIT unless new's fence failed (cutOff): its
// other side runs at the same time, and old's fence must not be held while
// new's is waited for.
func (w *write) fenceOld(atx *Tx, committing bool) {
	// Only the authoritative Tx on old reads and sets oldFenced: with
	// NewRows the other side's Tx runs at the same time.
	if atx.side != flags.SideOld || !atx.authoritative || w.oldFenced || !w.fences() {
		return
	}
	if w.op.NewRows && !committing && !w.cutOff.Load() {
		return
	}
	w.oldFenced = true
	atx.queueFenceOld()
}

// fences reports whether the write takes its routing key's fence on new
// (pgshift.fence): a dual write of a routing key the facade catches up.
func (w *write) fences() bool {
	return w.logs && w.routingKey != "" && !w.op.Global
}

// lockWait is how long the canonical side, when it is the other side, waits
// for a row's lock: long enough for the writes ahead of it, short enough that
// the server says so (55P03) before the write stops waiting for it.
func lockWait(otherTimeout time.Duration) time.Duration {
	return max(otherTimeout*3/4, time.Millisecond)
}

// pgErrorCode is the SQLSTATE of the server error in err, "" if none.
func pgErrorCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// lockCaptured takes the rows the capture triggers recorded on the
// authoritative side (Config.Capture, Config.Strict) and locks them on the
// canonical side now: they are rows that existed before the write, which
// other writes may hold, so their locks cannot wait for the COMMIT.
func (w *write) lockCaptured(ctx context.Context, atx *Tx) error {
	if !atx.captures() {
		return nil
	}
	before := len(atx.touched)
	if err := atx.takeCaptured(ctx); err != nil {
		return err
	}
	if len(atx.touched) == before {
		return nil
	}
	if err := w.lockTouched(ctx, atx); err != nil {
		return err
	}
	if w.lockTx == atx && len(atx.prefix) > 0 {
		return atx.flush(ctx)
	}
	return nil
}

// lockLate takes, on new as the authoritative side, the locks of rows the
// write function Touched after their statement (keys from RETURNING), before
// the other side's copy commits with its pull records: a repair pass that
// claims such a record must wait for this write's COMMIT rather than read
// new's not-yet-committed "no such row" and delete old's copy. One more
// round trip, for these writes only; none when the other side is skipped
// (no pull record is written).
func (w *write) lockLate(ctx context.Context, atx *Tx) error {
	if w.lockTx != atx || w.otherSkipped || w.locked >= len(atx.touched) {
		return nil
	}
	if err := w.lockTouched(ctx, atx); err != nil {
		return err
	}
	return atx.flush(ctx)
}

// Write runs fn as the stage of the user in ctx says: on the authoritative
// side, and then, when the stage writes both, on the other side, with the
// guarantee described in the package documentation. The result and error are
// the authoritative side's.
func Write[T any](ctx context.Context, f *Facade, op Op, fn WriteFunc[T]) (res T, err error) {
	ctx, cancel, timedOut := f.bound(ctx)
	defer cancel()
	res, err = writeBounded(ctx, f, op, fn)
	return res, timedOut(op, err)
}

// writeBounded is Write within the call's bound.
func writeBounded[T any](ctx context.Context, f *Facade, op Op, fn WriteFunc[T]) (res T, err error) {
	p := f.pools.acquire()
	defer p.release()
	var plan flags.Plan
	var stage flags.Stage
	for attempt := 1; ; attempt++ {
		if stage, err = f.stage(ctx, op); err != nil {
			return res, err
		}
		plan = stage.Plan()
		var w *write
		if res, w, err = writeAttempt(ctx, f, p, op, stage, fn); err == nil {
			break
		}
		// A refused fence proves the write rolled back on every side (the
		// other side's COMMIT waits for the authoritative side's), even
		// when its COMMIT was on its way with the statement.
		sent := w != nil && w.committing.Load() && !errors.Is(err, errAuthorityMoved)
		if w == nil || !w.logs || sent || attempt == writeAttempts || !retryable(err) || ctx.Err() != nil {
			break
		}
		if errors.Is(err, errAuthorityMoved) {
			// Another process served the key under the other authority
			// since this Facade caught it up: catch it up again.
			f.authority.forget(w.routingKey)
			if w.oldRefused.Load() {
				f.remarkOld(ctx, w.routingKey)
			}
		}
		f.log.Debug("write ran into another write's locks before anything committed; running it again",
			"op", op.Name, "routing_key", w.routingKey, "attempt", attempt, "err", err)
		if sleepCtx(ctx, time.Duration(attempt)*time.Duration(1+rand.IntN(10))*time.Millisecond) != nil {
			break
		}
	}
	if err != nil {
		return res, callError("write", op, plan.Authoritative, err)
	}
	recordOutcome(ctx, op, stage, plan.Authoritative)
	return res, nil
}

// writeAttempt is one run of a write under stage: the routing key caught
// up for its authority, then the sides written as the stage says. w is nil
// when the write did not begin.
func writeAttempt[T any](ctx context.Context, f *Facade, p *pools, op Op, stage flags.Stage, fn WriteFunc[T]) (res T, w *write, err error) {
	release, err := f.caughtUp(ctx, op, stage, true)
	if err != nil {
		return res, nil, err
	}
	defer release()
	plan := stage.Plan()
	w = &write{f: f, pools: p, op: op, routingKey: flags.RoutingKey(ctx), auth: plan.Authoritative, logs: plan.WriteOther}
	if plan.WriteOther {
		fn = refusingKeyless(fn)
	}
	switch {
	case !plan.WriteOther:
		res, err = writeSingle(ctx, w, plan.Authoritative, fn)
	case op.NewRows:
		res, err = writeParallel(ctx, w, plan.Authoritative, fn)
	default:
		res, err = writeOrdered(ctx, w, plan.Authoritative, fn)
	}
	return res, w, err
}

// callError names the call and the side whose failure err is, so that an
// error that says only what broke ("connection reset by peer") says where:
// "dualwrite: write users.update on new: ...".
func callError(kind string, op Op, side flags.Side, err error) error {
	return fmt.Errorf("dualwrite: %s %s on %s: %w", kind, op.Name, side, err)
}

// writeAttempts is how many times a dual write that ran into another
// write's locks (a deadlock PostgreSQL broke, or ErrRowBusy) before anything
// committed is run: the rows' locks pgshift takes, in capture mode after the
// statement that changed the rows, can meet an application's row locks in
// the other order, and the caller should not see that.
const writeAttempts = 3

// retryable reports whether err is a lock conflict a write may be run again
// after, when nothing of it committed.
func retryable(err error) bool {
	return errors.Is(err, ErrRowBusy) || pgErrorCode(err) == pgerrcode.DeadlockDetected
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeSingle writes the one side a stage writes: autocommit for a
// OneStatement write, else one transaction.
func writeSingle[T any](ctx context.Context, w *write, side flags.Side, fn WriteFunc[T]) (res T, err error) {
	start := time.Now()
	tx := w.newTx(side, true)
	tx.autocommit = w.op.OneStatement
	defer tx.end(ctx)
	res, err = fn(ctx, tx, nil)
	if err == nil {
		err = tx.commit(ctx)
	}
	w.f.m.record(ctx, w.op.Name, kindWrite, side, start, err)
	return res, err
}

// writeOrdered writes both sides one after the other, authoritative side
// first, under the rows' locks on the canonical side (see lockSide).
func writeOrdered[T any](ctx context.Context, w *write, auth flags.Side, fn WriteFunc[T]) (T, error) {
	if auth == lockSide {
		return writeAuthLocks(ctx, w, fn)
	}
	return writeLockedFollows(ctx, w, fn)
}

// writeAuthLocks is the ordered write when the authoritative side is the
// canonical one: its transaction takes the rows' locks with its first
// statement; the other side then runs and commits first, with pull records
// in its transaction (so a lost authoritative commit still converges); then
// the authoritative side commits, with its own records only when the other
// side failed. Three round trips for a OneStatement write.
func writeAuthLocks[T any](ctx context.Context, w *write, fn WriteFunc[T]) (res T, err error) {
	f := w.f
	start := time.Now()
	atx, otx := w.newTx(lockSide, true), w.newTx(lockSide.Other(), false)
	otx.commitInline = w.op.OneStatement && !otx.marks()
	w.lockTx = atx
	atx.queueFence(0)
	defer atx.end(ctx)
	defer otx.end(ctx)
	if res, err = fn(ctx, atx, nil); err == nil {
		err = w.lockCaptured(ctx, atx)
	}
	if err != nil {
		f.m.record(ctx, w.op.Name, kindWrite, atx.side, start, err)
		return res, err
	}
	w.otherSkipped = !f.breaker(otx.side).allow()
	if err := w.lockLate(ctx, atx); err != nil {
		f.m.record(ctx, w.op.Name, kindWrite, atx.side, start, err)
		return res, err
	}
	oerr := writeOther(ctx, w, otx, atx.touched, fn, &res)
	if oerr != nil {
		atx.queueLog(false) // the other side missed it: repair copies it over
	}
	err = atx.commit(ctx)
	f.m.record(ctx, w.op.Name, kindWrite, atx.side, start, err)
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	w.settle(ctx, atx, otx, oerr)
	return res, nil
}

// writeLockedFollows is the ordered write when the authoritative side is not
// the canonical one: the canonical side (the other side here) takes the
// rows' locks first, in a transaction of its own; the authoritative side
// runs and commits with its records in the same transaction, and the caller
// has its answer; the other side then runs and commits under the locks it
// still holds, off the caller's path. The other side never commits what the
// authoritative side did not, so it needs no pull records, and writes of one
// row still reach it in their authoritative order: the next write of the row
// waits for these locks. Two round trips on the caller's path for a
// OneStatement write, the first of them only BEGIN and the locks.
//
// So in these stages the caller has its answer before the other side has
// its copy: a read of the other side right after the write can miss it (a
// shadow read rechecks such a difference before it counts it), and Wait
// waits for it.
func writeLockedFollows[T any](ctx context.Context, w *write, fn WriteFunc[T]) (res T, err error) {
	f := w.f
	start := time.Now()
	otx, atx := w.newTx(lockSide, false), w.newTx(lockSide.Other(), true)
	atx.commitInline, otx.commitInline = w.op.OneStatement && !atx.captures(), w.op.OneStatement && !otx.marks()
	w.lockTx, w.eager = otx, true
	w.otherSkipped = !f.breaker(otx.side).allow()
	if !w.otherSkipped {
		otx.queueFence(lockWait(f.cfg.OtherTimeout))
		w.fencePending = w.fences()
	} else if w.fences() {
		w.cutOff.Store(true)
	}
	follow := false
	defer func() {
		atx.end(ctx)
		if !follow {
			_ = w.awaitFence() // otx's connection is free again
			otx.end(ctx)
		}
	}()
	if res, err = fn(ctx, atx, nil); err == nil {
		err = w.lockCaptured(ctx, atx)
	}
	if err == nil {
		atx.queueLog(false) // rows touched after the last statement
		// Rows touched after their statement (keys from RETURNING) are
		// locked now, with the COMMIT, before the caller can write them
		// again; until the COMMIT nobody else can see them.
		// If they cannot be locked (the caller gave up meanwhile), the other
		// side is left to the repair worker.
		// A write that locked nothing before its statements has not
		// checked its routing key's fence yet: it does, with those locks,
		// before old's COMMIT.
		var wg sync.WaitGroup
		if err = w.awaitFence(); err == nil && w.fencePending {
			err = w.lockTouched(ctx, atx)
		}
		if err == nil && w.locked < len(atx.touched) {
			wg.Go(func() {
				if w.lockTouched(ctx, atx) != nil {
					w.lockFailed = true
				}
			})
		}
		if err == nil {
			err = atx.commit(ctx)
		}
		wg.Wait()
	}
	f.m.record(ctx, w.op.Name, kindWrite, atx.side, start, err)
	if err != nil {
		// The other side has run nothing: its rollback undoes the locks.
		return res, err
	}
	if w.otherSkipped {
		w.settle(ctx, atx, otx, errSideOpen)
		return res, nil
	}
	follow = true
	w.follow(ctx, atx, otx, func() error { return writeOther(ctx, w, otx, nil, fn, &res) })
	return res, nil
}

// follow runs the other side's part of a write (run) off the caller's
// path, after the routing key's follows queued before it, on a connection
// held for it, then settles the write and ends otx.
func (w *write) follow(ctx context.Context, atx, otx *Tx, run func() error) {
	f := w.f
	w.pools.holdMore()
	wait, done := f.follows.add(w.routingKey, f.cfg.OtherTimeout)
	f.bg.Go(func() {
		defer w.pools.release()
		defer done()
		defer otx.end(ctx)
		wait()
		w.settle(ctx, atx, otx, run())
	})
}

// writeOther runs fn on the other side, bounded by OtherTimeout, with the
// pull records of rows (the authoritative side's touched rows) going with its
// first statement, and commits it; the outcome counts for the side's
// breaker.
func writeOther[T any](ctx context.Context, w *write, otx *Tx, rows []touchedRow, fn WriteFunc[T], prev *T) error {
	switch {
	case w.otherSkipped:
		return errSideOpen
	case w.lockFailed:
		return errUnlocked
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.f.cfg.OtherTimeout)
	defer cancel()
	start := time.Now()
	otx.queueLogOf(rows, true)
	_, err := fn(octx, otx, prev)
	if err == nil {
		err = otx.capturedElsewhere(octx, rows)
	}
	if err == nil {
		err = otx.commit(octx)
	}
	w.f.m.record(ctx, w.op.Name, kindWrite, otx.side, start, err)
	w.f.breaker(otx.side).report(err)
	return err
}

// settle confirms a write both sides committed (its log records are deleted,
// off the caller's path) or counts the other side's miss (they stay).
func (w *write) settle(ctx context.Context, atx, otx *Tx, oerr error) {
	f := w.f
	if oerr != nil {
		f.m.otherFailed(ctx, w.op.Name, otx.side)
		f.log.Debug("other side missed a write; left to repair", "op", w.op.Name, "side", otx.side,
			"routing_key", w.routingKey, "err", oerr)
		return
	}
	f.deletes.add(otx.side, otx.logIDs)
	if w.eager {
		f.deletes.add(atx.side, atx.logIDs)
	}
}

// writeParallel writes both sides at once (Op.NewRows): each side's log
// records go with its statements, authoritative on one side and pull on the
// other. New's transaction takes the rows' locks with its statement, so the
// repair worker, which takes them too, never reads a row while its write is
// in flight. When new is the authoritative side old's copy holds its
// COMMIT until new's write has ended: committed first, it could be repaired
// from new before new held the row. When old is, new's copy holds its
// COMMIT until old has committed (off the caller's path, as a follow): a
// copy on new must never be seen, and repaired from old, before old's
// commit.
func writeParallel[T any](ctx context.Context, w *write, auth flags.Side, fn WriteFunc[T]) (res T, err error) {
	f := w.f
	start := time.Now()
	w.eager = true
	atx, otx := w.newTx(auth, true), w.newTx(auth.Other(), false)
	followed := auth != lockSide // new's copy commits after old
	atx.commitInline = w.op.OneStatement && !atx.captures()
	// The other side's COMMIT waits for the authoritative side's write
	// function, in its own round trip: committed first, old's rows and pull
	// records could be found by a repair pass before new holds the rows'
	// locks, which would copy new's not-yet-written state (no row) over
	// them, and new's record would then be settled as if old had its copy.
	// With old authoritative new's copy is a follow, committed later still.
	otx.commitInline = false
	authDone := make(chan struct{})
	// authFailed says the authoritative side failed before its COMMIT was
	// sent: the other side then rolls back rather than commit a copy.
	var authFailed atomic.Bool
	var authDoneOnce sync.Once
	signalAuthDone := func() { authDoneOnce.Do(func() { close(authDone) }) }
	defer signalAuthDone()
	follow := false
	defer atx.end(ctx)
	defer func() {
		if !follow {
			otx.end(ctx)
		}
	}()
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.OtherTimeout)
	defer cancel()
	// Connections are taken canonical side first, as everywhere: two writes
	// never hold one pool's connection while waiting for the other's. A
	// side whose breaker is open is not asked for one.
	var oerr error
	w.otherSkipped = !f.breaker(otx.side).allow()
	acquireOther := func() {
		if w.otherSkipped {
			oerr = errSideOpen
			return
		}
		if oerr = otx.acquire(octx); oerr != nil {
			f.breaker(otx.side).report(oerr)
		}
	}
	if auth == lockSide {
		atx.queueFence(0)
	} else {
		otx.queueFence(0)
	}
	if auth == lockSide {
		if err = atx.acquire(ctx); err != nil {
			f.m.record(ctx, w.op.Name, kindWrite, auth, start, err)
			return res, err
		}
		acquireOther()
	} else {
		acquireOther()
		if err = atx.acquire(ctx); err != nil {
			f.m.record(ctx, w.op.Name, kindWrite, auth, start, err)
			return res, err
		}
	}
	var wg sync.WaitGroup
	if oerr == nil {
		wg.Go(func() {
			if followed {
				// New's copies of the key's earlier writes may still be
				// on their way: this one may depend on them.
				f.follows.wait(w.routingKey, f.cfg.OtherTimeout)
			}
			ostart := time.Now()
			if _, oerr = fn(octx, otx, nil); oerr == nil {
				oerr = otx.takeCaptured(octx)
			}
			switch {
			case oerr != nil:
			case followed:
				otx.queueLog(true)
				if len(otx.prefix) > 0 {
					oerr = otx.flush(octx)
				}
			default:
				otx.queueLog(true)
				if len(otx.prefix) > 0 {
					oerr = otx.flush(octx)
				}
				if oerr == nil {
					select {
					case <-authDone:
						if authFailed.Load() {
							oerr = errAuthFailed
						} else {
							oerr = otx.commit(octx)
						}
					case <-octx.Done():
						oerr = octx.Err()
					}
				}
			}
			f.m.record(ctx, w.op.Name, kindWrite, otx.side, ostart, oerr)
			f.breaker(otx.side).report(oerr)
		})
	}
	if res, err = fn(ctx, atx, nil); err == nil {
		err = atx.takeCaptured(ctx)
	}
	if err == nil {
		atx.queueLog(false)
		if followed && w.fences() && !w.fenced.Load() {
			// New's fence has not answered (new is slow, down, or its
			// breaker open): old's COMMIT takes old's fence instead.
			w.cutOff.Store(true)
		}
		err = atx.commit(ctx)
	}
	authFailed.Store(err != nil && (!atx.done || errors.Is(err, errAuthorityMoved)))
	signalAuthDone()
	// The authoritative connection goes back to its pool now, not once the
	// other side is done: a slow other side holds none of it.
	atx.end(ctx)
	wg.Wait()
	f.m.record(ctx, w.op.Name, kindWrite, auth, start, err)
	if err != nil {
		return res, err
	}
	if !followed || oerr != nil {
		w.settle(ctx, atx, otx, oerr)
		return res, nil
	}
	follow = true
	w.follow(ctx, atx, otx, func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.cfg.OtherTimeout)
		defer cancel()
		return otx.commit(cctx)
	})
	return res, nil
}

// rowArrays are rows as the array parameters of the statements that take
// several rows; keys are JSON arrays of strings.
type rowArrays struct {
	TableSchemas, TableNames, Keys []string
}

func rowParams(rows []touchedRow) rowArrays {
	p := rowArrays{
		TableSchemas: make([]string, len(rows)),
		TableNames:   make([]string, len(rows)),
		Keys:         make([]string, len(rows)),
	}
	for i, r := range rows {
		p.TableSchemas[i], p.TableNames[i] = r.schema, r.table
		b, err := json.Marshal(r.key)
		if err != nil {
			panic(err) // a []string always marshals
		}
		p.Keys[i] = string(b)
	}
	return p
}

// Exec is a convenience for write functions that return nothing but an
// error: it adapts fn to Write.
func Exec(ctx context.Context, f *Facade, op Op, fn func(ctx context.Context, tx *Tx) error) error {
	_, err := Write(ctx, f, op, func(ctx context.Context, tx *Tx, _ *struct{}) (struct{}, error) {
		return struct{}{}, fn(ctx, tx)
	})
	return err
}
