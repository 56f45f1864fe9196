package dualwrite_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestTheWorkerGrowsItsBatchOverABacklog: a started Repairer takes a log
// that fills its batch in passes that double up to pgshift repair's 2,000,
// so an outage's backlog drains at an operator's drain speed, and goes back
// to its BatchSize once a pass is not full.
func TestTheWorkerGrowsItsBatchOverABacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE backlog (id bigint PRIMARY KEY, v text NOT NULL)`)
		if err := dualwrite.Install(ctx, db.Pool); err != nil {
			t.Fatal(err)
		}
	}
	const rows = 10_000
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO backlog SELECT i, 'v' || i FROM generate_series(1, $1) AS i`, rows)
	// The log an outage of new leaves: an entry per row written on old alone.
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, created_at)
		SELECT 'public', 'backlog', ARRAY[i::text], 'backlog.update', now() - interval '1 minute' FROM generate_series(1, $1) AS i`, rows)

	r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: p.Old.Pool, New: p.New.Pool,
		RepairConfig: dualwrite.RepairConfig{Grace: time.Nanosecond, Interval: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	type pass struct{ batch, took int }
	var mu sync.Mutex
	var onOld []pass
	dualwrite.WithOnPass(r, func(side flags.Side, batch, took int) {
		if side == flags.SideOld {
			mu.Lock()
			onOld = append(onOld, pass{batch, took})
			mu.Unlock()
		}
	})
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(onOld)
		last := pass{}
		if n > 0 {
			last = onOld[n-1]
		}
		mu.Unlock()
		if r.Repaired() >= rows && last.took == 0 {
			break // the log drained, and a pass after it found it empty
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes the worker repaired %d of %d rows in %d passes on old", r.Repaired(), rows, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Stop()

	// 200+400+800+1,600 = 3,000, three passes of 2,000, the last 1,000 in
	// a pass that is not full, then the default batch again.
	want := []pass{{200, 200}, {400, 400}, {800, 800}, {1600, 1600}, {2000, 2000}, {2000, 2000}, {2000, 2000}, {2000, 1000}, {200, 0}}
	mu.Lock()
	got := onOld[:min(len(onOld), len(want))]
	rest := onOld[len(got):]
	mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("passes on old (batch, entries taken) = %v, want %v", got, want)
	}
	for _, ps := range rest {
		if ps != (pass{200, 0}) {
			t.Errorf("a later pass on old took %d entries in a batch of %d, want the default 200 and nothing to take", ps.took, ps.batch)
		}
	}
	var onNew int
	if err := p.New.Pool.QueryRow(ctx, `SELECT count(*) FROM backlog`).Scan(&onNew); err != nil {
		t.Fatal(err)
	}
	if onNew != rows {
		t.Errorf("new holds %d rows after the drain, want %d", onNew, rows)
	}
}
