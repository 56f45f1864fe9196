package dualwrite_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/dbtxtest"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// A log an outage filled has never been analyzed: the planner takes it for
// a few thousand entries. A repair pass's claim must still read only its
// batch, from repair_log_next_attempt_at_idx, rather than every due entry
// sorted on every pass (which made a drain slow down as the square of its
// backlog, and batches of 10,000 slower than batches of 2,000).
func TestClaimReadsOnlyItsBatchFromALogNeverAnalyzed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	oldServer, _ := pgtest.Servers(t)
	db := pgtest.NewDB(t, oldServer, pgtest.Empty)
	if err := dualwrite.Install(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	const entries, batch = 50_000, 10_000
	pgtest.Exec(t, db.Pool, `ALTER TABLE pgshift.repair_log SET (autovacuum_enabled = off)`)
	pgtest.Exec(t, db.Pool, `INSERT INTO pgshift.repair_log (table_schema, table_name, key, op, created_at)
		SELECT 'public', 't', ARRAY[i::text], 'test', now() - interval '1 minute' FROM generate_series(1, $1) AS i`, entries)

	q := pgshiftdb.New()
	var claim dbtxtest.Recorder
	_, _ = q.ClaimRepairEntries(ctx, &claim, pgshiftdb.ClaimRepairEntriesParams{GraceSeconds: 0, BatchSize: batch})

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := q.PlanClaimByIndex(ctx, tx); err != nil {
		t.Fatal(err)
	}
	var plan []struct{ Plan planNode }
	var raw []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) "+claim.SQL, claim.Args...).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	var read float64
	var sorted bool
	plan[0].Plan.walk(func(n planNode) {
		if n.RelationName == "repair_log" {
			read += n.ActualRows
		}
		if n.NodeType == "Sort" {
			sorted = true
		}
	})
	if sorted || read > batch {
		t.Errorf("the claim of %d entries read %.0f of the log's %d (sorted: %t): plan %s", batch, read, entries, sorted, raw)
	}

	if err := q.PlanFreely(ctx, tx); err != nil {
		t.Fatal(err)
	}
	var sortSetting string
	if err := tx.QueryRow(ctx, `SHOW enable_sort`).Scan(&sortSetting); err != nil || sortSetting != "on" {
		t.Errorf("enable_sort after PlanFreely = %q (%v), want the setting before, on", sortSetting, err)
	}
}

// planNode is a node of EXPLAIN (FORMAT JSON)'s plan, as far as the tests
// read it.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	ActualRows   float64    `json:"Actual Rows"`
	Plans        []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}
