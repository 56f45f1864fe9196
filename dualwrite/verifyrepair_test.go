package dualwrite_test

import (
	"context"
	"testing"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/verify"
)

// TestVerifyRepairNeverWritesAStaleCopy is the race of issue 18: verify
// --repair finds row R different and reads it on old; a dual write then
// commits R on both sides and settles; verify's repair must not write its
// stale copy over the acknowledged write. A trigger on new holds any write
// of the stale value before it takes the row's lock, until the dual write
// is done. verify --repair is verify.Run with Repair and then a Repairer's
// Drain, as the CLI and the demo run it.
func TestVerifyRepairNeverWritesAStaleCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pair := pgtest.NewPair(t, pgtest.Domain)
	users, _ := seedDomain(t, pair) // name 'seed' on both sides
	r := users[0]
	pgtest.Exec(t, pair.New.Pool, `UPDATE users SET name = 'stale' WHERE id = $1`, r)
	pgtest.Exec(t, pair.New.Pool, `CREATE FUNCTION hold_seed() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.name = 'seed' THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF; RETURN NEW; END $$;
		CREATE TRIGGER hold_seed BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION hold_seed()`)
	holder, err := pair.New.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	pgtest.Exec(t, holder, `SELECT pg_advisory_lock(4242)`)
	defer func() { _, _ = holder.Exec(ctx, `SELECT pg_advisory_unlock_all()`) }()

	b := setupOn(t, pair, flags.StageDualWrite, func(c *dualwrite.Config) { c.RepairDisabled = true })
	tbl, err := rowsync.LoadTable(ctx, pair.Old.Pool, "public", "users")
	if err != nil {
		t.Fatal(err)
	}
	verified, written := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		res, err := verify.Run(ctx, pair.Old.Pool, pair.New.Pool, []*rowsync.Table{tbl}, verify.Options{Repair: true, RecheckDelay: 1})
		if err == nil {
			err = res[0].Err
		}
		close(verified)
		if err != nil {
			done <- err
			return
		}
		<-written
		rep, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: pair.Old.Pool, New: pair.New.Pool})
		if err == nil {
			_, err = rep.Drain(ctx)
		}
		done <- err
	}()
	// Wait until verify has read R and holds its copy: either it waits in
	// the trigger or it has returned.
	for waiting := false; !waiting; {
		select {
		case <-verified:
			waiting = true
		default:
			if err := pair.New.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted)`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = dualwrite.Exec(userCtx("w"), b.facade, dualwrite.Op{Name: "users.rename"}, func(ctx context.Context, tx *dualwrite.Tx) error {
		tx.Touch("users", r)
		_, err := tx.Exec(ctx, `UPDATE users SET name = 'acknowledged' WHERE id = $1`, r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()
	close(written)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock(4242)`); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		if n := count(t, db.Pool, "users", "id = $1 AND name = 'acknowledged'", r); n != 1 {
			t.Errorf("%s lost the acknowledged write: %v", db.Name, pgtest.Dump(t, db.Pool, "users"))
		}
	}
}
