package pgshift

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs SQL on one database. *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn
// and pgx.Tx satisfy it, and so do the facade's *dualwrite.Tx and the DBTX
// interface sqlc generates, so generated queries run on any of them.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
