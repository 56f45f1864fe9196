package dualwrite

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgxrow"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// ErrNotOneStatement is returned by the second statement of a write whose Op
// promised OneStatement: the first one has already committed. A batch
// (Tx.SendBatch) is one statement; a CopyFrom is one too.
var ErrNotOneStatement = errors.New("dualwrite: a write marked Op.OneStatement ran a second statement; drop the mark or split the write")

// ErrTouchAfterCommit is returned by a write whose function Touched a row
// after a statement whose COMMIT had already gone with it: an Op.OneStatement
// write that Touched some rows before its statement (so the facade sent the
// COMMIT with it) and more after it. The write has committed; the facade
// recorded the late rows in the repair log in a statement of their own right
// after, so they still reach the other side, but a process that dies in
// between would lose them. Fix the write function: Touch every row before the
// statement, or Touch none before it (keys from RETURNING: the facade then
// holds the COMMIT until the function returns), or drop Op.OneStatement.
var ErrTouchAfterCommit = errors.New("dualwrite: a write Touched a row after its statement had committed")

// Tx is what a write function runs its statements on: a transaction on one
// side. It satisfies pgshift.Querier and the DBTX interface sqlc generates,
// so generated queries run on it unchanged.
//
// The transaction starts lazily: BEGIN, the facade's own work for the rows
// touched so far (their locks, their repair-log records) and the first
// statement travel to the server together, in one round trip; with
// Op.OneStatement the COMMIT travels with them too.
type Tx struct {
	w             *write
	side          flags.Side
	authoritative bool
	pool          *pgxpool.Pool
	conn          *pgxpool.Conn // nil until the first statement (and in autocommit)

	// autocommit sends statements straight to the pool, each its own
	// transaction: a OneStatement write in a stage that writes one side.
	autocommit bool
	// commitInline sends COMMIT in the same round trip as the (only)
	// statement: Op.OneStatement where the transaction may commit as soon as
	// its statement ran.
	commitInline bool

	begun      bool
	done       bool  // COMMIT sent (inline or by commit)
	inlined    bool  // the COMMIT went with the statement
	commitErr  error // the inline COMMIT's result
	statements int
	prefix     []queued      // the facade's statements, sent ahead of the next one
	within     time.Duration // the lock bound of the prefix's last queueWithin

	touched []touchedRow // rows reported with Touch
	// unchecked are tables Touched whose key refuseKeyless has not checked
	// yet; keyless is its refusal, once made.
	unchecked []string
	keyless   error
	logged    int // touched[:logged] have their repair-log record queued or sent
	// ownLocked: touched[:ownLocked] are locked by this Tx (NewRows on new).
	ownLocked int
	// lateTouch says a row was Touched after the COMMIT had gone inline:
	// its record could not go with the write (ErrTouchAfterCommit).
	lateTouch bool
	logIDs    []int64 // the repair-log entries this Tx wrote
	marked    bool    // the capture mark is queued or sent
	copies    int     // CopyFrom calls so far
	// unread closes the results of the statement whose COMMIT went with it,
	// while the write function has not closed them: commit reads that
	// COMMIT's answer through them.
	unread func()
}

// captures reports whether the capture triggers record this Tx's changes:
// Config.Capture or Config.Strict, in a stage that writes both sides, on the
// side whose log records the write's rows (the authoritative one; both with
// NewRows).
func (tx *Tx) captures() bool {
	return tx.marks() && (tx.authoritative || tx.w.op.NewRows)
}

// marks reports whether the capture triggers record this Tx's changes at
// all: on the side whose log records the write's rows (captures), and, in
// capture mode, on the other side too, where the rows must be the
// authoritative side's (see capturedElsewhere).
func (tx *Tx) marks() bool {
	c := tx.w.f.cfg
	return (c.Capture || c.Strict) && tx.w.logs
}

// errOtherRows is the other side's failure when, in capture mode, its
// statements changed rows the authoritative side's did not: the two sides
// differed before the write. Its transaction is rolled back, and the repair
// worker copies the authoritative side's rows.
var errOtherRows = errors.New("dualwrite: the other side's statements changed rows the authoritative side's did not; it is left to the repair worker")

// readCaptured sends what is queued and takes the rows the capture
// triggers recorded in this Tx's transaction so far.
func (tx *Tx) readCaptured(ctx context.Context) ([]touchedRow, error) {
	var text string
	tx.prefix = append(tx.prefix, queued{pgshiftdb.TakeCapturedSQL, nil, func(br pgx.BatchResults) error {
		return br.QueryRow().Scan(&text)
	}})
	if err := tx.flush(ctx); err != nil {
		return nil, fmt.Errorf("take captured rows on %s: %w", tx.side, err)
	}
	captured, err := capturedRows(text)
	if err != nil {
		return nil, fmt.Errorf("take captured rows on %s: %w", tx.side, err)
	}
	return captured, nil
}

// capturedElsewhere takes the rows the capture triggers recorded in this
// Tx's transaction (the other side's, in capture mode) and fails with
// errOtherRows if any is not among rows, the authoritative side's.
func (tx *Tx) capturedElsewhere(ctx context.Context, rows []touchedRow) error {
	if !tx.marks() || tx.captures() || !tx.begun || tx.done {
		return nil
	}
	captured, err := tx.readCaptured(ctx)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(rows))
	for _, r := range rows {
		known[rowKey(r)] = true
	}
	for _, r := range captured {
		if !known[rowKey(r)] {
			return fmt.Errorf("%w (first: %s.%s %v)", errOtherRows, r.schema, r.table, r.key)
		}
	}
	return nil
}

// readExec reads the result of a statement whose result is not needed.
func readExec(br pgx.BatchResults) error {
	_, err := br.Exec()
	return err
}

// takeCaptured takes the rows the capture triggers recorded in this Tx's
// transaction and adds those not touched yet to its touched rows; in strict
// mode a captured row that was not touched is an error, and a touched row
// nothing changed a warning.
func (tx *Tx) takeCaptured(ctx context.Context) error {
	if !tx.captures() || !tx.begun || tx.done {
		return nil
	}
	captured, err := tx.readCaptured(ctx)
	if err != nil {
		return err
	}
	touched := make(map[string]bool, len(tx.touched))
	for _, r := range tx.touched {
		touched[rowKey(r)] = true
	}
	seen := make(map[string]bool, len(captured))
	for _, r := range captured {
		k := rowKey(r)
		if seen[k] {
			continue
		}
		seen[k] = true
		if touched[k] {
			continue
		}
		if tx.w.f.cfg.Strict {
			return &NotTouchedError{Op: tx.w.op.Name, Schema: r.schema, Table: r.table, Key: r.key}
		}
		tx.touched = append(tx.touched, r)
	}
	if tx.w.f.cfg.Strict {
		for _, r := range tx.touched {
			if !seen[rowKey(r)] {
				tx.w.f.log.Warn("strict: a write touched a row its statements did not change", "op", tx.w.op.Name,
					"table", r.schema+"."+r.table, "key", strings.Join(r.key, ","))
			}
		}
	}
	return nil
}

// rowKey identifies a row: schema, table and key, NUL-separated.
func rowKey(r touchedRow) string {
	return r.schema + "\x00" + r.table + "\x00" + strings.Join(r.key, "\x00")
}

// NotTouchedError is returned, in strict mode (Config.Strict), by a write
// whose statements changed a row its write function did not Touch.
type NotTouchedError struct {
	Op            string
	Schema, Table string
	Key           []string
}

func (e *NotTouchedError) Error() string {
	return fmt.Sprintf("dualwrite: %s changed the row of %s with key (%s) without Touching it: add tx.Touch(%q, ...) before the statement that changes it",
		e.Op, pgx.Identifier{e.Schema, e.Table}.Sanitize(), strings.Join(e.Key, ", "), e.Table)
}

// queued is one of the facade's own statements and how to read its result.
type queued struct {
	sql  string
	args []any
	read func(pgx.BatchResults) error
}

type touchedRow struct {
	schema, table string
	key           []string
	// order is the row's place in the order of its writes (k_order): drawn
	// on new once the write held the row's lock; 0 until then, and for a row
	// the write could not lock.
	order int64
	// lockQueued says the row's lock goes in the same round trip as its
	// record (NewRows on new): the server fills the order in.
	lockQueued bool
}

// Side is the database this Tx writes.
func (tx *Tx) Side() flags.Side { return tx.side }

// Authoritative reports whether this Tx writes the authoritative side (the
// first run of a write function, whose result the caller gets).
func (tx *Tx) Authoritative() bool { return tx.authoritative }

// Touch reports that the write changes (inserts, updates or deletes) the row
// of table with the given primary key values, in key column order. Every
// write function must Touch each row it changes: the rows' locks and
// repair-log records are made of these. Touch a row before the statement
// that changes it: its lock is taken with that statement, in the same round
// trip. A row touched only after its statement is taken to be one the write
// created (its key came from RETURNING), which no other write can hold yet:
// it is logged, and locked only where a repair pass could otherwise read it
// before it commits (new authoritative, in live and rampdown: its lock is
// taken before old's copy commits with its pull record, one more round trip).
//
// Key values are Go values of the key columns (strings, integers,
// uuid.UUID, time.Time, []byte, bool, floats, pgtype values), written as
// rowsync.KeyText writes them: the text the server itself prints for them.
// In stages that write one side Touch does nothing. In the others a row of
// a table without a key (no primary key, no unique index on NOT NULL
// columns) fails the write with a *KeylessTableError (ErrKeylessTable)
// before any of it is sent: the next statement returns it, and so does the
// write, whatever the function returns.
//
// A row touched after a statement of an Op.OneStatement write keeps the
// write's COMMIT back until the write function returns (its record must be
// in the same transaction), so such a write costs one more round trip than
// one whose rows were touched before the statement. Touching rows both
// before and after that statement is an error: see ErrTouchAfterCommit.
func (tx *Tx) Touch(table string, key ...any) {
	if !tx.w.logs || (!tx.authoritative && !tx.w.op.NewRows) {
		return
	}
	if tx.statements > 0 {
		tx.w.lateKeys = true
	}
	if tx.done {
		tx.lateTouch = true
	}
	tx.noteTouched(table)
	tx.touched = append(tx.touched, touchedRow{schema: tx.w.f.cfg.Schema, table: table, key: rowsync.KeyText(key...)})
}

// mayInline reports whether the COMMIT may go in the same round trip as the
// statement about to be sent (Op.OneStatement): only when nothing the write
// function may still do would have to be in the same transaction. On a side
// whose rows are logged (the authoritative side; both with NewRows) that is
// when rows were touched before the statement: a write that touches none
// before it learns its keys from the statement (RETURNING), and their records
// must commit with it. On the other side it is when the authoritative side
// knew its keys before its statement: a write whose keys the database made
// can make different ones here (a sequence), and the write function must be
// able to refuse that result (ErrDiverged) before it commits unrecorded.
func (tx *Tx) mayInline() bool {
	switch {
	case !tx.commitInline:
		return false
	case !tx.w.logs:
		return true
	case tx.authoritative || tx.w.op.NewRows:
		return len(tx.touched) > 0
	}
	return !tx.w.lateKeys
}

// Exec runs a statement in the transaction.
func (tx *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	direct, err := tx.beforeStatement(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	if direct != nil {
		ct, err := direct.Exec(ctx, sql, args...)
		return ct, tx.outcome(err)
	}
	br, err := tx.send(ctx, &statement{sql: sql, args: args})
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, err := br.Exec()
	if cerr := tx.closeBatch(br); err == nil {
		err = cerr
	}
	return ct, tx.outcome(err)
}

// Query runs a query in the transaction.
func (tx *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	direct, err := tx.beforeStatement(ctx)
	if err != nil {
		return nil, err
	}
	if direct != nil {
		rows, err := direct.Query(ctx, sql, args...)
		if err != nil {
			return nil, tx.outcome(err)
		}
		if tx.autocommit {
			return &outcomeRows{Rows: rows, tx: tx}, nil
		}
		return rows, nil
	}
	br, err := tx.send(ctx, &statement{sql: sql, args: args})
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = tx.closeBatch(br)
		return nil, tx.outcome(err)
	}
	r := &batchRows{Rows: rows, tx: tx, br: br}
	if tx.inlined {
		tx.unread = r.Close
	}
	return r, nil
}

// outcome marks err as ErrCommitUnknown when the statement that failed was
// one whose COMMIT went with it (inline, or autocommit) and its answer was
// lost rather than refused by the server.
func (tx *Tx) outcome(err error) error {
	switch {
	case err == nil || !tx.autocommit && !tx.inlined:
		return err
	case tx.inlined:
		return sentCommitError(err)
	}
	return commitError(err)
}

// QueryRow runs a query that returns one row in the transaction.
func (tx *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return pgxrow.From(tx.Query(ctx, sql, args...))
}

// statementRunner is what runs a statement that needs no batch of the
// facade's: the pool in autocommit, the connection mid-transaction.
type statementRunner interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// beforeStatement does what must happen before the write function's next
// statement: refuse a second statement after an inline COMMIT, take the
// locks of the rows touched so far, and queue their log records. It returns
// where to run the statement when it needs no batch (the pool in autocommit,
// the connection mid-transaction), or nil when it must go through send.
func (tx *Tx) beforeStatement(ctx context.Context) (statementRunner, error) {
	tx.statements++
	if tx.w.op.OneStatement && tx.statements > 1 {
		return nil, ErrNotOneStatement
	}
	if tx.done {
		return nil, errors.New("dualwrite: statement after the transaction ended")
	}
	if tx.autocommit {
		return tx.pool, nil
	}
	if err := tx.refuseKeyless(ctx); err != nil {
		return nil, err
	}
	if !tx.begun && !tx.marked && tx.marks() {
		tx.marked = true
		tx.prefix = append(tx.prefix, queued{pgshiftdb.MarkCaptureSQL, []any{"on"}, readExec})
	}
	switch {
	case !tx.w.logs:
	case tx.w.op.NewRows:
		if tx.side == lockSide {
			tx.lockOwn()
		}
		tx.queueLog(!tx.authoritative)
	case tx.authoritative:
		tx.w.fenceAhead(ctx, tx)
		if err := tx.w.lockTouched(ctx, tx); err != nil {
			return nil, err
		}
		if tx.w.eager {
			tx.queueLog(false)
		}
	}
	if tx.begun && len(tx.prefix) == 0 && !tx.mayInline() {
		return tx.conn, nil
	}
	if err := tx.acquire(ctx); err != nil {
		return nil, err
	}
	return nil, nil
}

// acquire takes the Tx's connection from its pool on first use.
func (tx *Tx) acquire(ctx context.Context) error {
	if tx.conn != nil {
		return nil
	}
	conn, err := tx.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", tx.side, err)
	}
	tx.conn = conn
	return nil
}

// statement is one of the write function's statements, or its batch.
type statement struct {
	sql   string
	args  []any
	batch *pgx.Batch // when set, its statements instead of sql
}

// send sends BEGIN (on the first statement), the queued statements of the
// facade, the statement (nil: none) and (with commitInline) COMMIT in one
// round trip, and returns the results positioned at the statement's.
func (tx *Tx) send(ctx context.Context, stmt *statement) (pgx.BatchResults, error) {
	tx.w.fenceOld(tx, stmt != nil && tx.mayInline())
	b := &pgx.Batch{}
	first := !tx.begun
	if first {
		b.Queue("BEGIN")
	}
	prefix := tx.prefix
	tx.prefix = nil
	for _, q := range prefix {
		b.Queue(q.sql, q.args...)
	}
	if stmt != nil {
		if stmt.batch != nil {
			b.QueuedQueries = append(b.QueuedQueries, stmt.batch.QueuedQueries...)
		} else {
			b.Queue(stmt.sql, stmt.args...)
		}
		if tx.mayInline() {
			if err := unsent(ctx, tx.conn); err != nil {
				tx.prefix = prefix
				return nil, err
			}
			tx.beforeCommit()
			b.Queue("COMMIT")
			tx.done, tx.inlined = true, true
		}
	}
	tx.begun = true
	br := tx.conn.SendBatch(ctx, b)
	if first {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, tx.outcome(err)
		}
	}
	for _, q := range prefix {
		if err := q.read(br); err != nil {
			_ = br.Close()
			return nil, tx.outcome(err)
		}
	}
	return br, nil
}

// closeBatch reads what follows the statement (the inline COMMIT) and
// closes the batch.
func (tx *Tx) closeBatch(br pgx.BatchResults) error {
	if tx.inlined && tx.commitErr == nil {
		ct, err := br.Exec()
		if err == nil && ct.String() != "COMMIT" {
			err = pgx.ErrTxCommitRollback
		}
		tx.commitErr = sentCommitError(err)
	}
	err := br.Close()
	if tx.commitErr != nil {
		return tx.commitErr
	}
	return err
}

// queueLog queues the repair-log record of the rows touched and not yet
// logged, authoritative (pull false) or pull records, to go with the next
// statement or the COMMIT.
func (tx *Tx) queueLog(pull bool) {
	tx.queueLogOf(tx.touched, pull)
}

// queueLogOf queues records of rows[tx.logged:].
func (tx *Tx) queueLogOf(rows []touchedRow, pull bool) {
	if tx.logged >= len(rows) {
		return
	}
	fresh := rows[tx.logged:]
	tx.logged = len(rows)
	w := tx.w
	collect := func(br pgx.BatchResults) error {
		r, err := br.Query()
		if err != nil {
			return fmt.Errorf("record repair log on %s: %w", tx.side, err)
		}
		ids, err := pgx.CollectRows(r, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("record repair log on %s: %w", tx.side, err)
		}
		tx.logIDs = append(tx.logIDs, ids...)
		return nil
	}
	orders := make([]int64, len(fresh))
	for i, r := range fresh {
		orders[i] = r.order
		if r.order == 0 && !r.lockQueued {
			orders[i] = w.f.unlockedOrder()
		}
	}
	if len(fresh) == 1 {
		r := fresh[0]
		p := pgshiftdb.LogRowParams{TableSchema: r.schema, TableName: r.table, Key: r.key,
			Op: w.op.Name, RoutingKey: w.routingKey, Pull: pull, KOrder: pgtype.Int8{Int64: orders[0], Valid: orders[0] > 0}}
		tx.prefix = append(tx.prefix, queued{pgshiftdb.LogRowSQL, p.Args(), collect})
		return
	}
	p := rowParams(fresh)
	lp := pgshiftdb.LogRowsParams{TableSchemas: p.TableSchemas, TableNames: p.TableNames, Keys: p.Keys,
		Op: w.op.Name, RoutingKey: w.routingKey, Pull: pull, Orders: orders}
	tx.prefix = append(tx.prefix, queued{pgshiftdb.LogRowsSQL, lp.Args(), collect})
}

// lockOwn queues the locks of the rows this Tx touched and has not locked
// yet, on its own side (the canonical one), with its next statement: a
// NewRows write's. Their log records, queued after them in the same round
// trip, take their order from the server (LogRows).
func (tx *Tx) lockOwn() {
	from, to := tx.ownLocked, len(tx.touched)
	if from >= to {
		return
	}
	tx.ownLocked = to
	for i := from; i < to; i++ {
		tx.touched[i].lockQueued = true
	}
	tx.queueLock(tx.touched[from:to], 0, orderOf(tx.touched[from:to]))
}

// orderOf is the function that gives rows the order their lock drew. rows
// must not move (they are a slice of a Tx's touched rows, which no Touch
// grows between a lock's queueing and its reading).
func orderOf(rows []touchedRow) func(int64) {
	return func(k int64) {
		for i := range rows {
			rows[i].order = k
		}
	}
}

// queueLock queues the locks of rows (on the canonical side, in this Tx's
// transaction); once they are held, order receives the rows' order. With
// within > 0 the server gives up waiting for a lock after that long
// (SQLSTATE 55P03), so a row another write holds is told apart from a server
// that does not answer.
func (tx *Tx) queueLock(rows []touchedRow, within time.Duration, order func(int64)) {
	read := func(br pgx.BatchResults) error {
		var k int64
		if err := br.QueryRow().Scan(&k); err != nil {
			return fmt.Errorf("lock rows on %s: %w", tx.side, err)
		}
		tx.w.f.sawOrder(k)
		order(k)
		return nil
	}
	if len(rows) == 1 {
		tx.queueWithin(within, queued{pgshiftdb.LockRowSQL, []any{lockID(rows[0])}, read})
	} else {
		tx.queueWithin(within, queued{pgshiftdb.LockRowsSQL, []any{lockIDs(rows)}, read})
	}
}

// queueWithin queues q; with within > 0 the locks q waits for are waited
// for at most that long (SetLockTimeout before it, ResetLockTimeout after).
// Statements queued one after the other with the same bound share one
// SetLockTimeout and ResetLockTimeout (the fence and the rows' locks).
func (tx *Tx) queueWithin(within time.Duration, q queued) {
	if within <= 0 {
		tx.prefix = append(tx.prefix, q)
		return
	}
	reset := queued{pgshiftdb.ResetLockTimeoutSQL, nil, readExec}
	if n := len(tx.prefix); n > 0 && tx.prefix[n-1].sql == reset.sql && tx.within == within {
		tx.prefix = append(tx.prefix[:n-1], q, reset)
		return
	}
	tx.within = within
	tx.prefix = append(tx.prefix, queued{pgshiftdb.SetLockTimeoutSQL,
		[]any{strconv.FormatInt(within.Milliseconds(), 10)}, readExec}, q, reset)
}

// queueFence queues, first in this Tx's next round trip, the routing key's
// fence (pgshift.fence): the shared lock on the key's authority on new, and
// the check that new records the write's authoritative side for it. The Tx
// is on new. With within > 0 the lock is waited for at most that long
// (SQLSTATE 55P03), as queueLock's. A write that fences nothing (see
// write.fences) queues nothing.
func (tx *Tx) queueFence(within time.Duration) {
	w := tx.w
	if !w.fences() {
		return
	}
	p := pgshiftdb.FenceParams{RoutingKey: w.routingKey, Side: w.auth.String()}
	tx.queueWithin(within, queued{pgshiftdb.FenceSQL, p.Args(), tx.readFence})
}

// queueFenceOld queues, in this Tx's next round trip, the fence of a write
// under old's authority that goes on without new (pgshift.fence_old): a
// shared lock on the routing key's mark on old, and the check that the
// mark does not say new may serve the key. The Tx is on old.
func (tx *Tx) queueFenceOld() {
	tx.prefix = append(tx.prefix, queued{pgshiftdb.FenceOldSQL, []any{tx.w.routingKey}, tx.readFence})
}

// readFence reads a fence's answer: a refusal (PGSF1) says the routing key's
// authority moved (errAuthorityMoved; nothing of the transaction commits).
func (tx *Tx) readFence(br pgx.BatchResults) error {
	_, err := br.Exec()
	switch {
	case pgErrorCode(err) == pgshiftdb.FenceSQLState:
		tx.w.moved.Store(true)
		if tx.side != lockSide {
			tx.w.oldRefused.Store(true)
		}
		return fmt.Errorf("%w: %w", errAuthorityMoved, err)
	case err != nil:
		return fmt.Errorf("fence the routing key's authority on %s: %w", tx.side, err)
	}
	if tx.side == lockSide {
		tx.w.fenced.Store(true)
	}
	return nil
}

// flush sends the queued statements now, without a statement of the write
// function's: the locks an authoritative side on new waits for.
func (tx *Tx) flush(ctx context.Context) error {
	if err := tx.acquire(ctx); err != nil {
		return err
	}
	br, err := tx.send(ctx, nil)
	if err != nil {
		return err
	}
	return br.Close()
}

// commit ends the transaction, sending the queued statements (late log
// records) with the COMMIT. A transaction that never began commits
// trivially; one whose COMMIT went inline returns that COMMIT's result.
//
// Once the COMMIT is on its way, every error is ErrCommitUnknown unless the
// server's answer proves the rollback: an error reading a log record's result
// (a cancelled context, a broken connection) says nothing about the COMMIT
// behind it.
func (tx *Tx) commit(ctx context.Context) error {
	if tx.unread != nil {
		tx.unread()
	}
	if tx.done {
		if tx.commitErr == nil && tx.lateTouch {
			return tx.logAfterCommit(ctx)
		}
		return tx.commitErr
	}
	tx.w.fenceOld(tx, true)
	if !tx.begun && len(tx.prefix) == 0 {
		tx.done = true
		return nil
	}
	if err := tx.acquire(ctx); err != nil {
		return err
	}
	prefix := tx.prefix
	tx.prefix = nil
	b := &pgx.Batch{}
	if !tx.begun {
		b.Queue("BEGIN")
	}
	for _, q := range prefix {
		b.Queue(q.sql, q.args...)
	}
	if err := unsent(ctx, tx.conn); err != nil {
		return err // nothing was sent: the transaction rolls back in end
	}
	tx.beforeCommit()
	b.Queue("COMMIT")
	br := tx.conn.SendBatch(ctx, b)
	err := func() error {
		if !tx.begun {
			if _, err := br.Exec(); err != nil {
				return sentCommitError(err)
			}
		}
		for _, q := range prefix {
			if err := q.read(br); err != nil {
				return sentCommitError(err)
			}
		}
		ct, err := br.Exec()
		if err == nil && ct.String() != "COMMIT" {
			err = pgx.ErrTxCommitRollback
		}
		return sentCommitError(err)
	}()
	tx.begun, tx.done = true, true
	if cerr := br.Close(); err == nil && cerr != nil {
		err = sentCommitError(cerr)
	}
	tx.commitErr = err
	return err
}

// logAfterCommit records the rows touched after an inline COMMIT, in a
// transaction of their own, and reports the write function's mistake.
func (tx *Tx) logAfterCommit(ctx context.Context) error {
	tx.lateTouch = false
	pull := !tx.authoritative
	tx.queueLogOf(tx.touched, pull)
	prefix := tx.prefix
	tx.prefix = nil
	b := &pgx.Batch{}
	for _, q := range prefix {
		b.Queue(q.sql, q.args...)
	}
	err := tx.pool.SendBatch(context.WithoutCancel(ctx), b).Close()
	if err != nil {
		err = fmt.Errorf("record the rows touched after the COMMIT on %s: %w", tx.side, err)
		tx.w.f.log.Error("a write Touched rows after its COMMIT and their repair-log records failed: run pgshift verify --repair",
			"op", tx.w.op.Name, "side", tx.side, "err", err)
		return fmt.Errorf("%s: %w (their records failed too: %w)", tx.w.op.Name, ErrTouchAfterCommit, err)
	}
	tx.w.f.log.Error("a write Touched rows after its COMMIT: Touch them before the statement, or drop Op.OneStatement",
		"op", tx.w.op.Name, "side", tx.side)
	return fmt.Errorf("%s: %w; it committed, and its late rows were recorded for repair", tx.w.op.Name, ErrTouchAfterCommit)
}

// beforeCommit runs the test hook of that name, if any.
func (tx *Tx) beforeCommit() {
	tx.w.committing.Store(true)
	if h := tx.w.f.cfg.hooks; h != nil && h.beforeCommit != nil {
		h.beforeCommit(tx.side, tx.authoritative, tx.conn.Conn().PgConn().PID())
	}
}

// end rolls back what has not committed and returns the connection to the
// pool. A connection whose state is unknown (its ROLLBACK failed, or a
// statement was cut off) is closed instead of reused.
func (tx *Tx) end(ctx context.Context) {
	if tx.conn == nil {
		return
	}
	defer func() {
		tx.conn.Release()
		tx.conn = nil
	}()
	if tx.begun && !tx.done {
		tx.done = true
		if _, err := tx.conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); err != nil {
			_ = tx.conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}
}

// ErrCommitUnknown is returned (wrapped) when the authoritative side's
// COMMIT was sent but its answer never arrived (the connection broke, the
// server went down): the write may or may not have committed. Either way the
// two sides converge (the other side's log record makes the repair worker
// copy whatever the authoritative side holds), but the caller cannot tell
// which: read the row before retrying a write that is not idempotent.
var ErrCommitUnknown = errors.New("dualwrite: the outcome of the commit is unknown")

// sentCommitError marks an error read from a batch that carried a COMMIT
// the client sent: unknown, unless the server answered it with an ordinary
// error, after which the transaction is known to have rolled back. Unlike
// commitError it does not trust pgconn.SafeToRetry: a batch whose answer
// was cut off can fail later reads with "conn closed", which says nothing
// was sent on that connection since, not that the COMMIT was not.
func sentCommitError(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil, errors.Is(err, ErrCommitUnknown), errors.Is(err, pgx.ErrTxCommitRollback),
		errors.As(err, &pgErr) && pgErr.Severity == "ERROR":
		return err
	}
	return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
}

// unsent is the error of a batch with a COMMIT that must not be sent: the
// caller gave up, or the connection is closed (its transaction rolled back
// with it). Checked before sending, so what sentCommitError sees was sent.
func unsent(ctx context.Context, conn *pgxpool.Conn) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if conn.Conn().IsClosed() {
		return errors.New("dualwrite: the connection closed before the COMMIT was sent; the transaction rolled back")
	}
	return nil
}

// commitError marks a COMMIT error whose outcome is unknown: anything but an
// ordinary error the server answered with, after which the transaction is
// known to have rolled back.
func commitError(err error) error {
	if pgconn.SafeToRetry(err) { // nothing was sent
		return err
	}
	return sentCommitError(err)
}

// batchRows closes the batch its rows came from when they are closed.
type batchRows struct {
	pgx.Rows
	tx     *Tx
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.tx.unread = nil
	r.Rows.Close()
	r.err = r.tx.closeBatch(r.br)
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return r.tx.outcome(err)
	}
	return r.err
}

// outcomeRows are the rows of an autocommit statement: an error reading them
// may leave its outcome unknown.
type outcomeRows struct {
	pgx.Rows
	tx *Tx
}

func (r *outcomeRows) Err() error { return r.tx.outcome(r.Rows.Err()) }

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}
