package backfill_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const itemsDDL = `CREATE SCHEMA "Shop";
CREATE TYPE "Shop".state AS ENUM ('new', 'paid');
CREATE TABLE "Shop"."Line Items" (
	"Order" bigint, "line" int, price numeric(12,2), note text, raw bytea, doc jsonb,
	at timestamptz, tags text[], states "Shop".state[], u uuid, v int NOT NULL DEFAULT 0,
	PRIMARY KEY ("Order", "line"))`

// setup creates the items table on both sides and n rows on old.
func setup(t *testing.T, n int) (*pgtest.Pair, *rowsync.Table) {
	t.Helper()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, itemsDDL)
	}
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO "Shop"."Line Items" ("Order", line, price, note, raw, doc, at, tags, states, u)
		SELECT i / 3, i % 3, i * 1.25, CASE WHEN i % 7 = 0 THEN NULL ELSE E'n\t"' || i END, '\x01ff', jsonb_build_object('i', i),
		'2024-01-01'::timestamptz + i * interval '1 minute', ARRAY['a', NULL], '{new,paid}', gen_random_uuid()
		FROM generate_series(1, $1) AS i`, n)
	tbl, err := rowsync.LoadTable(context.Background(), p.Old.Pool, "Shop", "Line Items")
	if err != nil {
		t.Fatal(err)
	}
	return p, tbl
}

func requireEqual(t *testing.T, p *pgtest.Pair) {
	t.Helper()
	o, n := pgtest.Dump(t, p.Old.Pool, `"Shop"."Line Items"`), pgtest.Dump(t, p.New.Pool, `"Shop"."Line Items"`)
	if !slices.Equal(o, n) {
		t.Fatalf("sides differ: old %d rows, new %d rows", len(o), len(n))
	}
}

func TestBackfillCopiesEveryRowAndSkipsFinishedTables(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t, 250)
	ctx := context.Background()
	// a dual-written row new already has, with a newer value than old's
	if _, _, err := rowsync.CopyKeys(ctx, p.Old.Pool, p.New.Pool, tbl, [][]string{{"10", "1"}}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, p.New.Pool, `UPDATE "Shop"."Line Items" SET note = 'newer' WHERE "Order" = 10 AND line = 1`)
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{ChunkSize: 40})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if r := res[0]; r.Rows != 250 || r.Inserted != 249 || r.Chunks != 7 {
		t.Errorf("result %+v, want 250 rows read, 249 inserted in 7 chunks", r)
	}
	var note string
	if err := p.New.Pool.QueryRow(ctx, `SELECT note FROM "Shop"."Line Items" WHERE "Order" = 10 AND line = 1`).Scan(&note); err != nil || note != "newer" {
		t.Fatalf("dual-written row note = %q (err %v), want it kept as \"newer\"", note, err)
	}
	pgtest.Exec(t, p.Old.Pool, `UPDATE "Shop"."Line Items" SET note = 'newer' WHERE "Order" = 10 AND line = 1`)
	requireEqual(t, p)
	res, err = backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{ChunkSize: 40})
	if err != nil || !res[0].AlreadyDone || res[0].Rows != 0 {
		t.Errorf("second run: %+v, %v; want the table skipped as done", res[0], err)
	}
}

// childEnv names the databases the child process backfills.
const childEnv = "PGSHIFT_BACKFILL_CHILD"

// TestBackfillChild is the child process of TestBackfillKilledAndRerun: a
// slow backfill the parent kills.
func TestBackfillChild(t *testing.T) {
	urls := os.Getenv(childEnv)
	if urls == "" {
		return // run only as a child
	}
	var oldURL, newURL string
	if _, err := fmt.Sscan(urls, &oldURL, &newURL); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	oldPool, err := pgxpool.New(ctx, oldURL)
	if err != nil {
		t.Fatal(err)
	}
	newPool, err := pgxpool.New(ctx, newURL)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := rowsync.LoadTable(ctx, oldPool, "Shop", "Line Items")
	if err != nil {
		t.Fatal(err)
	}
	_, err = backfill.Run(ctx, oldPool, newPool, []*rowsync.Table{tbl}, backfill.Options{ChunkSize: 20,
		Progress: func(backfill.Progress) { time.Sleep(30 * time.Millisecond) }})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBackfillKilledAndRerunCopiesNoChunkTwice(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t, 600)
	ctx := context.Background()
	child := exec.Command(os.Args[0], "-test.run=^TestBackfillChild$")
	child.Env = append(os.Environ(), childEnv+"="+p.Old.URL+" "+p.New.URL)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for deadline := time.Now().Add(30 * time.Second); chunks < 5 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		_ = p.New.Pool.QueryRow(ctx, `SELECT count(*) FROM pgshift.backfill_chunks WHERE done_at IS NOT NULL`).Scan(&chunks)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	var before int
	if err := p.New.Pool.QueryRow(ctx, `SELECT count(*) FROM pgshift.backfill_chunks WHERE done_at IS NOT NULL`).Scan(&before); err != nil || before < 5 || before >= 30 {
		t.Fatalf("child committed %d of 30 chunks before it was killed (err %v); want it killed mid-way", before, err)
	}
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{ChunkSize: 20})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if !res[0].Resumed || res[0].Inserted != res[0].Rows {
		t.Errorf("rerun %+v: want resumed, every row it read new to new (no chunk read twice)", res[0])
	}
	var chunks2, done, rows int64
	if err := p.New.Pool.QueryRow(ctx, `SELECT count(*), count(done_at), sum(rows_copied) FROM pgshift.backfill_chunks`).Scan(&chunks2, &done, &rows); err != nil {
		t.Fatal(err)
	}
	if rows != 600 || chunks2 != 31 || done != 31 {
		t.Errorf("the plan holds %d chunks, %d done, with %d rows copied; want 31 chunks done (30 of 20 rows, and the open end), 600 rows, each copied once", chunks2, done, rows)
	}
	requireEqual(t, p)
}

func TestBackfillDuringDualWritesNeverOverwritesNewerRows(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t, 900)
	ctx := context.Background()
	var stop atomic.Bool
	// Writers act like the dual-writing facade: write old, then upsert the
	// same row into new with a higher version v. Each writer owns its rows,
	// so the two sides see a row's writes in the same order.
	var version atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				order, line := (i*7%75)*4+w, i%3
				v := version.Add(1)
				if _, err := p.Old.Pool.Exec(ctx, `UPDATE "Shop"."Line Items" SET v = $3, note = 'dual' WHERE "Order" = $1 AND line = $2`, order, line, v); err != nil {
					return
				}
				if _, err := p.New.Pool.Exec(ctx, `INSERT INTO "Shop"."Line Items" ("Order", line, note, v) VALUES ($1, $2, 'dual', $3)
					ON CONFLICT ("Order", line) DO UPDATE SET v = EXCLUDED.v, note = EXCLUDED.note`, order, line, v); err != nil {
					return
				}
			}
		})
	}
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{ChunkSize: 15,
		Progress: func(backfill.Progress) { time.Sleep(2 * time.Millisecond) }})
	stop.Store(true)
	wg.Wait()
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if res[0].Inserted == res[0].Rows {
		t.Fatalf("backfill found no dual-written row on new (%+v): the writers did not overlap it", res[0])
	}
	// Every row a writer touched has the same v on both sides: had backfill
	// overwritten a dual-written row, new would hold old's earlier v.
	rows, err := p.Old.Pool.Query(context.Background(), `SELECT "Order", line, v FROM "Shop"."Line Items" WHERE note = 'dual'`)
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ order, line, v int64 }
	want, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (key, error) {
		var k key
		return k, r.Scan(&k.order, &k.line, &k.v)
	})
	if err != nil || len(want) == 0 {
		t.Fatalf("no dual-written rows on old (err %v)", err)
	}
	for _, k := range want {
		var v int64
		if err := p.New.Pool.QueryRow(context.Background(), `SELECT v FROM "Shop"."Line Items" WHERE "Order" = $1 AND line = $2`, k.order, k.line).Scan(&v); err != nil || v != k.v {
			t.Errorf("row (%d, %d): new v = %d (err %v), old v = %d; a dual-written row was overwritten", k.order, k.line, v, err, k.v)
		}
	}
}

// TestBackfillDoesNotResurrectRowsDeletedInFlight deletes rows the way the
// dual-writing facade does (old, then new, where the row is not yet) while
// their chunk is between old and new: backfill must not leave them on new.
func TestBackfillDoesNotResurrectRowsDeletedInFlight(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, "CREATE TABLE doomed (id int PRIMARY KEY, v text)")
	}
	pgtest.Exec(t, p.Old.Pool, "INSERT INTO doomed SELECT i, 'v' || i FROM generate_series(1, 300) i")
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "doomed")
	if err != nil {
		t.Fatal(err)
	}
	var deleted []int
	opts := backfill.WithAfterCopy(backfill.Options{ChunkSize: 100}, func(tb *rowsync.Table) {
		if tb.Name != "doomed" {
			return
		}
		// The last row of the chunk in flight (chunk n holds ids
		// 100(n-1)+1 .. 100n) goes, committed on old; on new the delete
		// finds nothing yet (the chunk has not committed).
		id := 100 * (len(deleted) + 1)
		if _, err := p.Old.Pool.Exec(ctx, "DELETE FROM doomed WHERE id = $1", id); err != nil {
			t.Error(err)
			return
		}
		tag, err := p.New.Pool.Exec(ctx, "DELETE FROM doomed WHERE id = $1", id)
		if err != nil || tag.RowsAffected() != 0 {
			t.Errorf("delete on new: %v rows, %v; want 0 rows (the chunk is uncommitted)", tag.RowsAffected(), err)
		}
		deleted = append(deleted, id)
	})
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, opts)
	if err != nil || res[0].Err != nil {
		t.Fatalf("backfill: %v %v", err, res[0].Err)
	}
	if len(deleted) == 0 {
		t.Fatal("the hook deleted nothing: the test tested nothing")
	}
	var onNew, onOld int
	if err := p.New.Pool.QueryRow(ctx, "SELECT count(*) FROM doomed WHERE id = ANY($1)", deleted).Scan(&onNew); err != nil {
		t.Fatal(err)
	}
	if onNew != 0 {
		t.Fatalf("%d of the %d rows deleted while in flight are back on new", onNew, len(deleted))
	}
	if err := p.Old.Pool.QueryRow(ctx, "SELECT count(*) FROM doomed").Scan(&onOld); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := p.New.Pool.QueryRow(ctx, "SELECT count(*) FROM doomed").Scan(&n); err != nil || n != onOld {
		t.Fatalf("new has %d rows, old %d (err %v)", n, onOld, err)
	}
}

// MaxRate spaces the pieces: 3,000 rows at 3,000 rows/s take most of a
// second, in pieces of at most half a second's worth (1,500 rows).
func TestBackfillMaxRate(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t, 3000)
	start := time.Now()
	res, err := backfill.Run(context.Background(), p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{MaxRate: 3000})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if took := time.Since(start); took < 800*time.Millisecond || res[0].Pieces < 2 {
		t.Fatalf("3,000 rows at 3,000 rows/s: %v in %d pieces; want most of a second, pieces of at most 1,500 rows", took, res[0].Pieces)
	}
	requireEqual(t, p)
}

// PieceTarget sizes pieces by time: with a target far below what any piece
// takes, the one chunk is copied in a first piece of 5,000 rows (a tenth of
// the chunk size) and then pieces of 500.
func TestBackfillPieceTarget(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t, 6000)
	res, err := backfill.Run(context.Background(), p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{PieceTarget: time.Microsecond})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if r := res[0]; r.Chunks != 1 || r.Pieces != 4 || r.Rows != 6000 {
		t.Fatalf("%+v; want one chunk copied in 4 pieces: 5,000 rows, 500, 500, and an empty one that finds the end", r)
	}
	requireEqual(t, p)
}

// MaxOldActive holds the backfill back while old serves more active
// sessions than the limit, and lets it go when they finish.
func TestBackfillWaitsWhileOldIsBusy(t *testing.T) {
	t.Parallel()
	p, tbl := setup(t, 200)
	ctx := context.Background()
	busy := make(chan error, 2)
	for range 2 {
		go func() { _, err := p.Old.Pool.Exec(ctx, `SELECT pg_sleep(1.5)`); busy <- err }()
	}
	time.Sleep(200 * time.Millisecond) // both sessions active
	start := time.Now()
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{MaxOldActive: 1})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("the backfill went ahead in %v while old had 2 active sessions over a limit of 1", took)
	}
	for range 2 {
		if err := <-busy; err != nil {
			t.Fatal(err)
		}
	}
	requireEqual(t, p)
}

// TestBackfillWaitsForAParentTheApplicationIsWriting is the history
// checker's seed 51354: a dual write committed a parent and its child on
// old, and the parent's copy to new has not landed yet (in dualwrite it
// follows the caller's acknowledgement, or the repair worker makes it).
// Backfill's copy of the child is refused by new's foreign key until then;
// the piece is copied again once the parent is there, rather than the
// table's backfill stopping on the error. The parent lands when backfill
// logs its first retry.
func TestBackfillWaitsForAParentTheApplicationIsWriting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE parent (id int PRIMARY KEY);
			CREATE TABLE child (id int PRIMARY KEY, parent int NOT NULL REFERENCES parent ON DELETE CASCADE)`)
	}
	pgtest.Exec(t, p.Old.Pool, "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (10, 1)")
	tbl, err := rowsync.LoadTable(ctx, p.Old.Pool, "public", "child")
	if err != nil {
		t.Fatal(err)
	}
	retries := &onRetry{do: func() {
		if _, err := p.New.Pool.Exec(ctx, "INSERT INTO parent VALUES (1)"); err != nil {
			t.Error(err) // a backfill worker's goroutine: no Fatal here
		}
	}}
	res, err := backfill.Run(ctx, p.Old.Pool, p.New.Pool, []*rowsync.Table{tbl}, backfill.Options{Logger: slog.New(retries)})
	if err != nil || res[0].Err != nil {
		t.Fatalf("backfill: %v %v", err, res[0].Err)
	}
	if n := retries.n.Load(); n != 1 {
		t.Fatalf("the piece was tried again %d times, want 1 (the parent lands at the first retry)", n)
	}
	var n int
	if err := p.New.Pool.QueryRow(ctx, "SELECT count(*) FROM child WHERE id = 10").Scan(&n); err != nil || n != 1 {
		t.Fatalf("child 10 on new: %d rows (err %v), want 1", n, err)
	}
}

// onRetry is a log handler that runs do at backfill's first "trying it
// again" line and counts such lines.
type onRetry struct {
	do func()
	n  atomic.Int32
}

func (h *onRetry) Enabled(context.Context, slog.Level) bool { return true }
func (h *onRetry) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "trying it again") && h.n.Add(1) == 1 {
		h.do()
	}
	return nil
}
func (h *onRetry) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *onRetry) WithGroup(string) slog.Handler      { return h }
