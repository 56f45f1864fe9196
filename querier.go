package pgshift

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier runs SQL on one database. It is the DBTX interface sqlc generates
// for pgx/v5, with every method a package can need (batches for
// :batchexec, :batchmany and :batchone, COPY for :copyfrom), so generated
// queries run on any Querier. *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and
// pgx.Tx satisfy it, and so does the facade's *dualwrite.Tx.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}
