package dualwrite

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// Tx is what a write function runs its statements on: a transaction on one
// side. It satisfies the DBTX interface sqlc generates, so generated queries
// run on it unchanged.
//
// The transaction starts lazily: BEGIN, the repair-log record of the rows
// touched so far and the first statement travel to the server together, in
// one round trip.
type Tx struct {
	conn          *pgxpool.Conn
	f             *Facade
	op            Op
	routingKey    string
	side          flags.Side
	authoritative bool
	logTouches    bool // the stage writes the other side: record touched rows
	started       bool
	touched       []touchedRow
	logged        int     // touched[:logged] are in the repair log
	logIDs        []int64 // their entries
}

func (f *Facade) newTx(ctx context.Context, op Op, side flags.Side, authoritative bool) (*Tx, error) {
	conn, err := f.pool(side).Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return &Tx{conn: conn, f: f, op: op, routingKey: flags.RoutingKey(ctx), side: side, authoritative: authoritative}, nil
}

// Side is the database this Tx writes.
func (tx *Tx) Side() flags.Side { return tx.side }

// Authoritative reports whether this Tx writes the authoritative side (the
// first run of a write function).
func (tx *Tx) Authoritative() bool { return tx.authoritative }

// Touch reports that the write changes (inserts, updates or deletes) the row
// of table with the given primary key values, in key column order. Every
// write function must Touch each row it changes on the authoritative side:
// the repair log is made of these. Touching before the statement that
// changes the row saves a round trip. Key values are Go values of the key
// columns (strings, integers, uuid.UUID, time.Time, []byte, bool, floats,
// pgtype values), written as rowsync.KeyText writes them: the text the
// server itself prints for them.
func (tx *Tx) Touch(table string, key ...any) {
	if !tx.authoritative {
		return
	}
	tx.touched = append(tx.touched, touchedRow{schema: tx.f.cfg.Schema, table: table, key: rowsync.KeyText(key...)})
}

// logRecord is the statement that records the rows touched and not yet
// logged (and takes their advisory locks); ok is false when there are none.
func (tx *Tx) logRecord() (sql string, args []any, ok bool, err error) {
	if !tx.authoritative || tx.logged == len(tx.touched) || !tx.logTouches {
		return "", nil, false, nil
	}
	rows := tx.touched[tx.logged:]
	if len(rows) == 1 {
		r := rows[0]
		arg := pgshiftdb.LogTouchedRowParams{TableSchema: r.schema, TableName: r.table, Key: r.key, Op: tx.op.Name, RoutingKey: tx.routingKey}
		sql, args = pgshiftdb.LogTouchedRowSQL, arg.Args()
	} else {
		arg, err := logParams(rows, tx.op.Name, tx.routingKey)
		if err != nil {
			return "", nil, false, err
		}
		sql, args = pgshiftdb.LogTouchedRowsSQL, arg.Args()
	}
	tx.logged = len(tx.touched)
	return sql, args, true, nil
}

// collectLogIDs keeps the ids of the repair-log entries a record made.
func (tx *Tx) collectLogIDs(rows pgx.Rows) error {
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	tx.logIDs = append(tx.logIDs, ids...)
	return err
}

// flushLog records rows touched after the last statement (identity keys
// known only from RETURNING).
func (tx *Tx) flushLog(ctx context.Context) error {
	sql, args, ok, err := tx.logRecord()
	if err != nil || !ok {
		return err
	}
	b := &pgx.Batch{}
	if !tx.started {
		b.Queue("BEGIN")
	}
	b.Queue(sql, args...).Query(tx.collectLogIDs)
	tx.started = true
	return tx.conn.SendBatch(ctx, b).Close()
}

// start sends BEGIN and the pending log record, then the first statement
// with them; it returns the batch positioned at the statement's result.
func (tx *Tx) start(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	logSQL, logArgs, logged, err := tx.logRecord()
	if err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if logged {
		b.Queue(logSQL, logArgs...)
	}
	b.Queue(sql, args...)
	tx.started = true
	br := tx.conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil { // BEGIN
		_ = br.Close()
		return nil, err
	}
	if logged {
		rows, err := br.Query()
		if err == nil {
			err = tx.collectLogIDs(rows)
		}
		if err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("record repair log: %w", err)
		}
	}
	return br, nil
}

// Exec runs a statement in the transaction.
func (tx *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if tx.started {
		if err := tx.flushLog(ctx); err != nil {
			return pgconn.CommandTag{}, err
		}
		return tx.conn.Exec(ctx, sql, args...)
	}
	br, err := tx.start(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	ct, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return ct, err
}

// Query runs a query in the transaction.
func (tx *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if tx.started {
		if err := tx.flushLog(ctx); err != nil {
			return nil, err
		}
		return tx.conn.Query(ctx, sql, args...)
	}
	br, err := tx.start(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// QueryRow runs a query that returns one row in the transaction.
func (tx *Tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return errRow{err}
	}
	return rowFrom{rows}
}

// commit ends the transaction; a transaction that never started commits
// trivially. The connection goes back to the pool.
func (tx *Tx) commit(ctx context.Context) error {
	defer tx.conn.Release()
	if !tx.started {
		return nil
	}
	ct, err := tx.conn.Exec(ctx, "COMMIT")
	if err == nil && ct.String() != "COMMIT" {
		err = pgx.ErrTxCommitRollback
	}
	return err
}

// rollback ends the transaction without committing and returns the
// connection to the pool.
func (tx *Tx) rollback(ctx context.Context) {
	defer tx.conn.Release()
	if tx.started {
		if _, err := tx.conn.Exec(ctx, "ROLLBACK"); err != nil {
			_ = tx.conn.Conn().Close(ctx) // unknown state: do not reuse
		}
	}
}

// batchRows closes the batch its rows came from when they are closed.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.Close()
	return false
}

// rowFrom is pgx's QueryRow over Rows of our own.
type rowFrom struct{ rows pgx.Rows }

func (r rowFrom) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
