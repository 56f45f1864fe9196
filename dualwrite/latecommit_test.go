package dualwrite_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// A write under old's authority whose caller stopped waiting before old's
// COMMIT arrived there (ErrCommitUnknown) still commits when it arrives:
// the server runs what it is sent. Its transaction on new, which held the
// routing key's fence, is gone by then, so a process that moves the key to
// new does not wait for it on new. Old must then either make the move wait
// for it (and the catch-up read its entries) or refuse it: otherwise a
// write of the key under new's authority, here one taking the same unique
// email, is acknowledged first, the late COMMIT lands on old, and the two
// users with one email can be repaired onto neither side (history seed
// 73766, under load). Here old's COMMIT is held in the network for 600 ms
// while the caller waits 300 ms.
func TestACommitLandingAfterItsCallerGaveUpNeverOutrunsAMoveToNew(t *testing.T) {
	t.Parallel()
	direct := pgtest.NewPair(t, pgtest.Domain)
	old := *direct.Old
	var proxy *pgtest.Proxy
	old.Pool, proxy = proxiedPoolOf(t, &old, 8)
	var armed atomic.Bool
	a := setupOn(t, &pgtest.Pair{Old: &old, New: direct.New}, flags.StageShadow, func(c *dualwrite.Config) {
		c.RepairDisabled = true
		*c = dualwrite.WithBeforeCommit(*c, func(side flags.Side, authoritative bool, _ uint32) {
			if side == flags.SideOld && authoritative && armed.Load() {
				proxy.DelayEach(600*time.Millisecond, 0)
			}
		})
	})
	b := setupOn(t, direct, flags.StageLive, func(c *dualwrite.Config) {
		c.RepairDisabled = true
		c.OtherTimeout = 10 * time.Second
	})
	ctx := userCtx("late")
	if err := createUser(ctx, a.facade, uuid.Must(uuid.NewV7()), "first@example.com"); err != nil {
		t.Fatal(err) // new records old settled for the key
	}
	a.facade.Wait()

	const email = "late@example.com"
	idA, idB := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	armed.Store(true)
	actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	errA := createUser(actx, a.facade, idA, email)
	cancel()
	armed.Store(false)
	if !errors.Is(errA, dualwrite.ErrCommitUnknown) {
		t.Fatalf("A's write (its COMMIT on old held past its caller's deadline): %v, want ErrCommitUnknown", errA)
	}
	errB := createUser(ctx, b.facade, idB, email)
	time.Sleep(time.Second) // A's COMMIT has reached old
	proxy.DelayEach(0, 0)

	for _, f := range []*dualwrite.Facade{a.facade, b.facade} {
		f.Wait()
		rep, err := f.Repairer().Drain(context.Background())
		if err != nil || rep.Postponed > 0 {
			t.Fatalf("drain after the writes: %+v, %v (A's write: %v; B's: %v)", rep, err, errA, errB)
		}
	}
	requireEqualSides(t, direct.Old.Pool, direct.New.Pool)
	if n := count(t, direct.Old.Pool, "users", "email = $1", email); n != 1 {
		t.Fatalf("%d users with the email on each side, want one", n)
	}
	if errB == nil && count(t, direct.New.Pool, "users", "id = $1", idB) != 1 {
		t.Fatalf("B's acknowledged user is not on new")
	}
}

// Old's mark of a routing key can say new while new records old settled:
// a move back to old whose mark on old failed (old did not answer then).
// Every write under old's authority takes old's fence, which refuses it
// there; the refused write marks old again (under the key's authority on
// new, taken alone) and runs again, rather than being refused for good.
func TestAStaleMarkOnOldIsMendedByTheWriteItRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageShadow, func(c *dualwrite.Config) { c.RepairDisabled = true })
	ctx := userCtx("stale")
	if err := createUser(ctx, b.facade, uuid.Must(uuid.NewV7()), "first@example.com"); err != nil {
		t.Fatal(err) // new records old settled for the key
	}
	b.facade.Wait()
	pgtest.Exec(t, b.pair.Old.Pool, `INSERT INTO pgshift.key_authority (routing_key, side, settled) VALUES ('stale', 'new', true)
		ON CONFLICT (routing_key) DO UPDATE SET side = 'new'`)
	id := uuid.Must(uuid.NewV7())
	if err := createUser(ctx, b.facade, id, "second@example.com"); err != nil {
		t.Fatalf("a write under old's authority with old's mark stale: %v", err)
	}
	var side string
	if err := b.pair.Old.Pool.QueryRow(context.Background(), `SELECT side FROM pgshift.key_authority WHERE routing_key = 'stale'`).Scan(&side); err != nil || side != "old" {
		t.Fatalf("old's mark after the write: %q (%v), want old", side, err)
	}
	b.facade.Wait()
	requireEqualSides(t, b.pair.Old.Pool, b.pair.New.Pool)
}
