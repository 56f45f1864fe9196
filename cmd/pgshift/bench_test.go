package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/pglaunch"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/verify"
)

// benchRows is the size of the benchmark table: 1,000,000 rows, or
// PGSHIFT_BENCH_ROWS (BENCHMARKS.md runs 5,000,000 too, for cost growth).
var benchRows = func() int64 {
	if n, err := strconv.ParseInt(os.Getenv("PGSHIFT_BENCH_ROWS"), 10, 64); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}()

// benchTable creates the benchmark table on both sides and fills old.
func benchTable(b *testing.B) (*pgtest.Pair, *rowsync.Table) {
	b.Helper()
	p := pgtest.NewPair(b, pgtest.Empty)
	ddl := `CREATE TABLE bench (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, doc jsonb)`
	pgtest.Exec(b, p.Old.Pool, ddl)
	pgtest.Exec(b, p.New.Pool, ddl)
	pgtest.Exec(b, p.Old.Pool, `INSERT INTO bench SELECT i, 'name ' || i, i / 100.0, '2024-01-01'::timestamptz + i * interval '1 second',
		jsonb_build_object('i', i, 'tag', 'x') FROM generate_series(1, $1) AS i`, benchRows)
	pgtest.Exec(b, p.Old.Pool, `VACUUM ANALYZE bench`)
	t, err := rowsync.LoadTable(context.Background(), p.Old.Pool, "public", "bench")
	if err != nil {
		b.Fatal(err)
	}
	return p, t
}

func emptyNew(b *testing.B, p *pgtest.Pair) {
	b.Helper()
	pgtest.Exec(b, p.New.Pool, `TRUNCATE bench; DELETE FROM pgshift.backfill_chunks WHERE table_name = 'bench'`)
}

func tool(b *testing.B, name string) string {
	b.Helper()
	dir, err := pglaunch.FindBinDir()
	if err != nil {
		b.Fatal(err)
	}
	// the directory may hold only links to the server binaries (initdb);
	// the client tools live beside their targets
	if resolved, err := filepath.EvalSymlinks(filepath.Join(dir, "initdb")); err == nil {
		dir = filepath.Dir(resolved)
	}
	return filepath.Join(dir, name)
}

func shell(b *testing.B, cmd *exec.Cmd) {
	b.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v: %s", cmd, err, out)
	}
}

// BenchmarkBackfillVsPgDump copies a 1,000,000-row table from old to new
// with backfill (one worker, and four workers sharing the table's chunks)
// and with pg_dump --data-only | psql, into an empty table each time.
func BenchmarkBackfillVsPgDump(b *testing.B) {
	p, t := benchTable(b)
	ctx := context.Background()
	if err := pgshiftdb.Install(ctx, p.New.Pool); err != nil {
		b.Fatal(err)
	}
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("backfill-%d-workers", workers), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				emptyNew(b, p)
				b.StartTimer()
				res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{t}, backfill.Options{Workers: workers})
				if err != nil || res[0].Err != nil || res[0].Inserted != benchRows {
					b.Fatal(err, res[0].Err, res[0].Inserted)
				}
			}
			b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
	b.Run("pg_dump|psql", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			emptyNew(b, p)
			b.StartTimer()
			shell(b, exec.Command("sh", "-c", `"$0" --data-only -t public.bench -d "$1" | "$2" -q -v ON_ERROR_STOP=1 -d "$3" >/dev/null`,
				tool(b, "pg_dump"), p.Old.URL, tool(b, "psql"), p.New.URL))
		}
		b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}

// BenchmarkVerifyVsPgDump compares identical 1,000,000-row tables with
// verify (key-hash buckets, the default, and key chunks) and dumps the
// table from both servers at once with pg_dump; then compares them again
// with 1,000 scattered rows changed on new; and with --changed, which
// compares only the rows the dual-write history names (1,000 and 10,000).
// The re-check delay is 1 ms (the default 500 ms wait for in-flight writes
// is a pause, not work).
func BenchmarkVerifyVsPgDump(b *testing.B) {
	p, t := benchTable(b)
	ctx := context.Background()
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		if err := pgshiftdb.Install(ctx, db.Pool); err != nil {
			b.Fatal(err)
		}
	}
	if res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{t}, backfill.Options{}); err != nil || res[0].Err != nil {
		b.Fatal(err, res[0].Err)
	}
	pgtest.Exec(b, p.New.Pool, `VACUUM ANALYZE bench`)
	verifyRows := func(name string, opts verify.Options, rows int64, differences int) {
		b.Run(name, func(b *testing.B) {
			opts.RecheckDelay = time.Millisecond
			for b.Loop() {
				res, err := verify.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{t}, opts)
				if err != nil || res[0].Err != nil || res[0].Differences() != differences || res[0].Rows != rows {
					b.Fatal(err, res[0].Err, res[0].Differences(), res[0].Rows)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
	verifyRun := func(name string, opts verify.Options, differences int) {
		verifyRows(name, opts, benchRows, differences)
	}
	verifyRun("verify-buckets", verify.Options{}, 0)
	verifyRun("verify-chunks", verify.Options{Buckets: -1}, 0)
	b.Run("pg_dump-both", func(b *testing.B) {
		for b.Loop() {
			var wg sync.WaitGroup
			for _, url := range []string{p.Old.URL, p.New.URL} {
				wg.Go(func() {
					shell(b, exec.Command(tool(b, "pg_dump"), "--data-only", "-t", "public.bench", "-d", url, "-f", "/dev/null"))
				})
			}
			wg.Wait()
		}
		b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	// verify --changed after 1,000 and 10,000 scattered rows were dual
	// written since the full verifies above: the dual-write history names
	// them on old, as the facade leaves it once new confirms each write.
	history := func(every int64) {
		pgtest.Exec(b, p.Old.Pool, `TRUNCATE pgshift.changed_rows`)
		pgtest.Exec(b, p.Old.Pool, `INSERT INTO pgshift.changed_rows (table_schema, table_name, key)
			SELECT 'public', 'bench', ARRAY[id::text] FROM bench WHERE id % ($1::bigint / $2::bigint) = 7`, benchRows, every)
	}
	history(1000)
	verifyRows("verify-changed-1000-rows", verify.Options{Changed: true}, 1000, 0)
	history(10_000)
	verifyRows("verify-changed-10000-rows", verify.Options{Changed: true}, 10_000, 0)
	history(1000)
	pgtest.Exec(b, p.New.Pool, `UPDATE bench SET name = 'changed' WHERE id % ($1::bigint / 1000) = 7`, benchRows)
	// (before the full verifies that find the differences: --changed
	// stands on the last full verify that found the table equal)
	verifyRows("verify-changed-1000-rows-1000-differences", verify.Options{Changed: true}, 1000, 1000)
	verifyRun("verify-buckets-1000-differences", verify.Options{}, 1000)
	verifyRun("verify-chunks-1000-differences", verify.Options{Buckets: -1}, 1000)
	pgtest.Exec(b, p.New.Pool, `UPDATE bench SET name = 'name ' || id WHERE id % ($1::bigint / 1000) = 7`, benchRows)
}
