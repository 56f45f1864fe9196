package dualwrite_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/repo"
)

// TestCatchUpWaitsForWritesInFlight holds a live write of a user (new
// authoritative, old failing, so its row reaches old only through the
// repair log) while the user is moved back to shadow, and reads the user
// under shadow meanwhile: the read waits for the write in flight under the
// previous authority, and the catch-up then repairs its entry, so the read
// from old returns the acknowledged write. Served at once, it would read old
// without it (the repair worker is off: only the catch-up can copy it).
func TestCatchUpWaitsForWritesInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t, flags.StageLive, func(c *dualwrite.Config) {
		c.RepairDisabled = true
		// The catch-up's repair is bounded by OtherTimeout; with both
		// cores busy one repair took longer than the default 1 s here, and
		// the read went on without it. Nothing here is down or hung.
		c.OtherTimeout = 10 * time.Second
	})
	ctx := userCtx("flip")
	u, err := b.store.Users.Create(ctx, repo.NewUser{Email: "flip@example.com", Name: "before"})
	if err != nil {
		t.Fatal(err)
	}
	b.facade.Wait()

	held, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	let := func() { releaseOnce.Do(func() { close(release) }) }
	defer let() // a failing test does not leave the write held
	written := make(chan error, 1)
	go func() {
		written <- dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "users.rename"}, func(ctx context.Context, tx *dualwrite.Tx) error {
			if !tx.Authoritative() {
				return errors.New("injected: the other side misses this write")
			}
			tx.Touch("users", u.ID)
			if _, err := tx.Exec(ctx, "UPDATE users SET name = 'after' WHERE id = $1", u.ID); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	b.stage.Set(flags.StageShadow)
	read := make(chan string, 1)
	go func() {
		name, err := dualwrite.Read(ctx, b.facade, dualwrite.Op{Name: "users.name"}, func(ctx context.Context, q pgshift.Querier) (string, error) {
			var name string
			err := q.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", u.ID).Scan(&name)
			return name, err
		})
		if err != nil {
			t.Errorf("read under shadow: %v", err)
		}
		read <- name
	}()
	select {
	case name := <-read:
		t.Fatalf("the read under shadow returned %q while a live write of the user was in flight", name)
	case <-time.After(200 * time.Millisecond):
	}
	let()
	if err := <-written; err != nil {
		t.Fatalf("the live write failed for the caller: %v", err)
	}
	if name := <-read; name != "after" {
		t.Fatalf("the read under shadow returned %q, want the acknowledged live write's %q", name, "after")
	}
}
