package dualwrite_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// BenchmarkStatements measures what each of the facade's own statements
// (see TestRoundTrips for which a write runs) adds to a write's transaction
// on one server: a one-row update in a transaction (BEGIN, UPDATE, COMMIT in
// one round trip, as the facade sends them) alone, and with each statement
// queued before the update. A variant's excess over "update" is that
// statement's cost, server time and protocol together; the off-path
// deletion of a write's repair-log record is BenchmarkSettleRecords.
func BenchmarkStatements(b *testing.B) {
	bb := benchSetup(b)
	ctx := context.Background()
	pool := bb.pair.Old.Pool
	const routingKey = "bench-statements"
	if _, err := pool.Exec(ctx, pgshiftdb.RecordAuthoritySQL, pgshiftdb.RecordAuthorityParams{RoutingKey: routingKey, Side: "old", Settled: true}.Args()...); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	user := bb.users[0]
	logRow := func() pgshiftdb.LogRowParams {
		return pgshiftdb.LogRowParams{TableSchema: "public", TableName: "users", Key: []string{user.String()}, Op: "bench", RoutingKey: routingKey}
	}
	write := func(queue func(*pgx.Batch)) func() error {
		return func() error {
			batch := &pgx.Batch{}
			batch.Queue("BEGIN")
			if queue != nil {
				queue(batch)
			}
			batch.Queue("UPDATE users SET name = $2 WHERE id = $1", user, strconv.FormatInt(n.Add(1), 10))
			batch.Queue("COMMIT")
			return pool.SendBatch(ctx, batch).Close()
		}
	}
	variants := []variant{
		{name: "update", op: write(nil)},
		{name: "lockrow", op: write(func(batch *pgx.Batch) { batch.Queue(pgshiftdb.LockRowSQL, n.Load()) })},
		{name: "fence", op: write(func(batch *pgx.Batch) {
			batch.Queue(pgshiftdb.FenceSQL, pgshiftdb.FenceParams{RoutingKey: routingKey, Side: "old"}.Args()...)
		})},
		{name: "fenceold", op: write(func(batch *pgx.Batch) { batch.Queue(pgshiftdb.FenceOldSQL, routingKey) })},
		{name: "locktimeout", op: write(func(batch *pgx.Batch) {
			batch.Queue(pgshiftdb.SetLockTimeoutSQL, "150")
			batch.Queue(pgshiftdb.ResetLockTimeoutSQL)
		})},
		{name: "logrow", op: write(func(batch *pgx.Batch) { batch.Queue(pgshiftdb.LogRowSQL, logRow().Args()...) })},
	}
	for i := range variants {
		if variants[i].name == "logrow" {
			variants[i].settle = func() { _, _ = pool.Exec(ctx, "DELETE FROM pgshift.repair_log") }
		}
	}
	interleaved(b, 20, 1, variants...)
}

// BenchmarkSettleRecords measures the off-path settlement of writes' repair-log
// records that reached both sides: DeleteRepairEntries (each record deleted,
// its row's key kept in the dual-write history, pgshift.changed_rows), 100
// records at a time as the facade's deleter batches them; per record.
func BenchmarkSettleRecords(b *testing.B) {
	bb := benchSetup(b)
	ctx := context.Background()
	pool := bb.pair.Old.Pool
	const batchSize = 100
	ids := make([]int64, 0, batchSize)
	for i := range b.N {
		b.StopTimer()
		batch := &pgx.Batch{}
		for j := range batchSize {
			// A key per record, as writes of many rows leave them.
			key := []string{strconv.Itoa(i*batchSize + j)}
			batch.Queue(pgshiftdb.LogRowSQL, pgshiftdb.LogRowParams{TableSchema: "public", TableName: "users", Key: key, Op: "bench", RoutingKey: "bench"}.Args()...)
		}
		br := pool.SendBatch(ctx, batch)
		ids = ids[:0]
		for range batchSize {
			var id int64
			if err := br.QueryRow().Scan(&id); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := br.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := pgshiftdb.New().DeleteRepairEntries(ctx, pool, ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/record")
}
