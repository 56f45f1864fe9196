package cutover_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

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

// TestForwardMovesWantDurableCommits: a side that runs with fsync or
// synchronous_commit off can lose, in a crash, writes the facade settled;
// every forward move's gates say so, side by side, unless the operator
// waived it (test servers), and servers that keep their commits pass.
func TestForwardMovesWantDurableCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	durableGates := func(target cutover.Target, to flags.Stage, limits cutover.Limits) map[string]cutover.Gate {
		t.Helper()
		r, err := cutover.Check(ctx, target, to-1, to, limits)
		if err != nil {
			t.Fatal(err)
		}
		gates := map[string]cutover.Gate{}
		for _, g := range r.Gates {
			if strings.HasPrefix(g.Name, "durable commits on ") {
				gates[strings.TrimPrefix(g.Name, "durable commits on ")] = g
				if !g.OK && r.Ready {
					t.Errorf("move to %v ready with %+v not met", to, g)
				}
			}
		}
		return gates
	}

	// The shared test servers run with both off.
	lossy := pgtest.NewPair(t, pgtest.Domain)
	target := cutover.Target{Old: lossy.Old.Pool, New: lossy.New.Pool}
	for _, to := range []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive, flags.StageRampdown, flags.StageComplete} {
		g := durableGates(target, to, cutover.Limits{})
		for _, side := range []string{"old", "new"} {
			if g[side].OK || g[side].Measured != "fsync off, synchronous_commit off" || !strings.Contains(g[side].Fix, "on "+side) {
				t.Fatalf("move to %v on servers without fsync: %s's gate %+v, want not met, naming both settings", to, side, g[side])
			}
		}
	}
	g := durableGates(target, flags.StageDualWrite, cutover.Limits{AllowNonDurable: true})
	if !g["old"].OK || !strings.HasPrefix(g["old"].Limit, "waived") || !g["new"].OK {
		t.Fatalf("waived: %+v, want met and saying it was waived", g)
	}

	oldServer, newServer := pgtest.DedicatedWith(t, map[string]string{"fsync": "on", "synchronous_commit": "on"})
	durable := pgtest.PairOn(t, oldServer, newServer, pgtest.Domain)
	target = cutover.Target{Old: durable.Old.Pool, New: durable.New.Pool}
	if g = durableGates(target, flags.StageDualWrite, cutover.Limits{}); len(g) != 0 {
		t.Fatalf("durable servers: %+v, want the gate met (and not shown)", g)
	}
	// synchronous_commit off for the gate's own session (a role's or a
	// database's setting) is seen as well.
	cfg, err := pgxpool.ParseConfig(durable.New.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	asyncNew, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(asyncNew.Close)
	g = durableGates(cutover.Target{Old: durable.Old.Pool, New: asyncNew}, flags.StageDualWrite, cutover.Limits{})
	if _, shown := g["old"]; shown || g["new"].OK || g["new"].Measured != "fsync on, synchronous_commit off" {
		t.Fatalf("new with synchronous_commit off: %+v, want new's not met, old's met", g)
	}
}
