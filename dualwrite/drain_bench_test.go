package dualwrite_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// drainRows is the size of BenchmarkDrainVsBackfill's table and backlog:
// 200,000, or PGSHIFT_BENCH_ROWS.
var drainRows = func() int64 {
	if n, err := strconv.ParseInt(os.Getenv("PGSHIFT_BENCH_ROWS"), 10, 64); err == nil && n > 0 {
		return n
	}
	return 200_000
}()

// BenchmarkDrainVsBackfill copies the same table from old to new, empty
// each time, with backfill (one worker) and by draining a repair log that
// names every row (one entry per row, as an outage of new leaves it): with
// Repairer.Drain (what `pgshift repair` runs) at several batch sizes, and
// with a started Repairer (what an application's facade runs) at the
// default batch size. The log is neither vacuumed nor analyzed before a
// drain, as after an outage. Each reports rows/s.
func BenchmarkDrainVsBackfill(b *testing.B) {
	ctx := context.Background()
	p := pgtest.NewPair(b, pgtest.Empty)
	ddl := `CREATE TABLE bench (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, doc jsonb)`
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(b, db.Pool, ddl)
		if err := dualwrite.Install(ctx, db.Pool); err != nil {
			b.Fatal(err)
		}
	}
	pgtest.Exec(b, p.Old.Pool, `INSERT INTO bench SELECT i, 'name ' || i, i / 100.0, '2024-01-01'::timestamptz + i * interval '1 second',
		jsonb_build_object('i', i, 'tag', 'x') FROM generate_series(1, $1) AS i`, drainRows)
	pgtest.Exec(b, p.Old.Pool, `VACUUM ANALYZE bench`)
	t, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "bench")
	if err != nil {
		b.Fatal(err)
	}
	emptyNew := func(b *testing.B) {
		b.Helper()
		pgtest.Exec(b, p.New.Pool, `TRUNCATE bench; DELETE FROM pgshift.backfill_chunks WHERE table_name = 'bench'`)
	}
	// fillLog gives old's log one entry per row; the table on new is empty.
	fillLog := func(b *testing.B) {
		b.Helper()
		emptyNew(b)
		pgtest.Exec(b, p.Old.Pool, `TRUNCATE pgshift.repair_log`)
		pgtest.Exec(b, p.Old.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, created_at)
			SELECT 'public', 'bench', ARRAY[i::text], 'bench.update', now() - interval '1 minute' FROM generate_series(1, $1) AS i`, drainRows)
	}
	rate := func(b *testing.B) {
		b.ReportMetric(float64(drainRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	}
	b.Run("backfill", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			emptyNew(b)
			b.StartTimer()
			res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{t}, backfill.Options{Workers: 1})
			if err != nil || res[0].Err != nil || res[0].Inserted != drainRows {
				b.Fatal(err, res[0].Err, res[0].Inserted)
			}
		}
		rate(b)
	})
	for _, batch := range []int{dualwrite.RepairBatchSizeDefault, 2000, 10000} {
		b.Run(fmt.Sprintf("drain-batch-%d", batch), func(b *testing.B) {
			r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: p.Old.Pool, New: p.New.Pool,
				RepairConfig: dualwrite.RepairConfig{BatchSize: batch, PassTimeout: time.Minute}})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				fillLog(b)
				b.StartTimer()
				rep, err := r.Drain(ctx)
				if err != nil || int64(rep.OldToNew) != drainRows {
					b.Fatal(err, rep)
				}
			}
			rate(b)
		})
	}
	b.Run("worker", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			fillLog(b)
			r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: p.Old.Pool, New: p.New.Pool,
				RepairConfig: dualwrite.RepairConfig{Grace: time.Nanosecond}})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := r.Start(ctx); err != nil {
				b.Fatal(err)
			}
			for r.Repaired() < drainRows {
				time.Sleep(5 * time.Millisecond)
			}
			b.StopTimer()
			r.Stop()
			b.StartTimer()
		}
		rate(b)
	})
}
