// Package dbtxtest has test helpers for sqlc-generated code.
package dbtxtest

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrRecorded is what a Recorder returns for every statement.
var ErrRecorded = errors.New("recorded, not sent")

// Recorder is a DBTX that keeps the statement and arguments a generated
// method sends, sends nothing, and fails it with ErrRecorded.
type Recorder struct {
	SQL  string
	Args []any
}

// Exec records the statement.
func (r *Recorder) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	r.SQL, r.Args = sql, args
	return pgconn.CommandTag{}, ErrRecorded
}

// Query records the statement.
func (r *Recorder) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	r.SQL, r.Args = sql, args
	return nil, ErrRecorded
}

// QueryRow records the statement; its row's Scan fails.
func (r *Recorder) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	r.SQL, r.Args = sql, args
	return errRow{}
}

type errRow struct{}

func (errRow) Scan(...any) error { return ErrRecorded }
