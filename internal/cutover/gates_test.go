package cutover_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestMovesWaitForEveryPartitionToRefuseTruncate: a partition attached to a
// captured table after install has no TRUNCATE trigger; every forward move
// is refused, naming it, until install --capture runs again.
func TestMovesWaitForEveryPartitionToRefuseTruncate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := pgtest.NewPair(t, pgtest.Domain)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE m (id int PRIMARY KEY) PARTITION BY RANGE (id);
			CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10)`)
		if _, err := dualwrite.InstallCapture(ctx, db.Pool, "", []string{"m"}); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.Exec(t, p.New.Pool, `CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20)`)
	target := cutover.Target{Old: p.Old.Pool, New: p.New.Pool, Tables: []string{"m"}}
	gate := func(to flags.Stage) *cutover.Gate {
		t.Helper()
		r, err := cutover.Check(ctx, target, to-1, to, cutover.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range r.Gates {
			if strings.HasPrefix(g.Name, "TRUNCATE refused") {
				if r.Ready {
					t.Errorf("move to %v ready with gate %+v not met", to, g)
				}
				return &r.Gates[i]
			}
		}
		return nil
	}
	for _, to := range []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive} {
		g := gate(to)
		if g == nil || g.OK || !strings.Contains(g.Name, "on new") || !strings.Contains(g.Measured, "public.m2") {
			t.Fatalf("move to %v: gate %+v, want one not met naming new's public.m2", to, g)
		}
	}
	if _, err := dualwrite.InstallCapture(ctx, p.New.Pool, "", []string{"m"}); err != nil {
		t.Fatal(err)
	}
	if g := gate(flags.StageDualWrite); g != nil {
		t.Fatalf("after install again: gate %+v, want none", g)
	}
}
