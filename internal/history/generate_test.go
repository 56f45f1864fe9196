package history

import (
	"slices"
	"testing"

	"github.com/pgshift/pgshift/flags"
)

// TestGenerateRunsTheToolsBesideTheWriters checks what Generate adds for
// backfill, verify --repair and killed processes: some histories of the
// first hundred seeds start with new empty of the seeded rows, every user in
// dualwrite and the backfill as the controller's first step; some run
// verify among their steps; some run a writer in a child process and kill
// it; and these leave a seed's writes (but the child's commit faults) and
// its other steps as they were without them.
func TestGenerateRunsTheToolsBesideTheWriters(t *testing.T) {
	cfg := DefaultConfig()
	without := cfg
	without.Backfill, without.Verify, without.Kill = 0, 0, 0
	backfills, verifies, kills := 0, 0, 0
	for seed := int64(1); seed <= 100; seed++ {
		h, bare := Generate(seed, cfg), Generate(seed, without)
		if bare.Backfill || bare.Child || slices.ContainsFunc(bare.Control, func(c Control) bool { return c.Kind == Backfill || c.Kind == Verify || c.Kind == Kill }) {
			t.Fatalf("seed %d with backfill and verify disabled: %s", seed, bare)
		}
		// The child's writes lose their commit faults (the parent's
		// proxy injects those), and only they.
		same := func(a, b Op) bool {
			if h.Child && a.Writer == h.ChildWriter {
				if a.Commit != NoCommitFault {
					return false
				}
				b.Commit = NoCommitFault
			}
			return a.String() == b.String()
		}
		if !slices.EqualFunc(h.Ops, bare.Ops, same) {
			t.Fatalf("seed %d: the tools changed the writes", seed)
		}
		if h.Child {
			kills++
			if !slices.ContainsFunc(h.Control, func(c Control) bool { return c.Kind == Kill }) {
				t.Fatalf("seed %d: a child process without a kill: %s", seed, h)
			}
		}
		others := slices.DeleteFunc(slices.Clone(h.Control), func(c Control) bool { return c.Kind == Backfill || c.Kind == Verify || c.Kind == Kill })
		if !slices.Equal(others, bare.Control) {
			t.Fatalf("seed %d: the tools changed the other control steps:\n%v\n%v", seed, others, bare.Control)
		}
		if slices.ContainsFunc(h.Control, func(c Control) bool { return c.Kind == Verify }) {
			verifies++
		}
		if !h.Backfill {
			continue
		}
		backfills++
		if h.Control[0].Kind != Backfill || len(h.Seeded) == 0 {
			t.Fatalf("seed %d: a backfill history whose first step is not the backfill, or with nothing to copy: %s", seed, h)
		}
		for u, s := range h.Stages {
			if s != flags.StageDualWrite {
				t.Fatalf("seed %d: user%d starts in %s in a backfill history", seed, u, s)
			}
		}
	}
	if backfills < 10 || verifies < 10 || kills < 10 {
		t.Fatalf("of 100 seeds, %d backfill, %d verify, %d kill a child process: want each common", backfills, verifies, kills)
	}
	t.Logf("of 100 seeds, %d backfill, %d run verify --repair, %d SIGKILL a child process", backfills, verifies, kills)
}
