package dualwrite_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
)

// TestReturningKeyInsertReachesNewAfterOutage is the write every application
// makes: an insert whose key the authoritative side assigns (an identity,
// from RETURNING), through the repo package and the README's facade (every
// Config field but the pools and the stages at its default), while new is
// down. Each acknowledged write, the event among them, must be on new once
// new is back and the repair log has drained.
func TestReturningKeyInsertReachesNewAfterOutage(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageShadow} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			oldSrv, newSrv := pgtest.Dedicated(t)
			pair := pgtest.PairOn(t, oldSrv, newSrv, pgtest.Domain)
			f, err := dualwrite.New(context.Background(), dualwrite.Config{
				Old: pair.Old.Pool, New: pair.New.Pool, Stages: flags.Static(stage)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			store := repo.New(f)
			ctx := userCtx("outage")
			owner, err := store.Users.Create(ctx, repo.NewUser{Email: "owner@example.com", Name: "Owner"})
			if err != nil {
				t.Fatal(err)
			}
			f.Wait()

			if err := newSrv.Launched.Stop(); err != nil {
				t.Fatal(err)
			}
			ev, err := store.Events.Create(ctx, repo.NewEvent{UserID: owner.ID, Kind: "signup"})
			if err != nil {
				t.Fatalf("Events.Create with new down: %v", err)
			}
			post, err := store.Posts.Create(ctx, repo.NewPost{UserID: owner.ID, Title: "t", Body: "b"})
			if err != nil {
				t.Fatalf("Posts.Create with new down: %v", err)
			}
			if _, err := store.Users.Update(ctx, owner.ID, repo.UserUpdate{Name: "Renamed", Country: "DE", Plan: "pro"}); err != nil {
				t.Fatalf("Users.Update with new down: %v", err)
			}
			f.Wait()
			// The event's record is on old, in the same transaction as the
			// event: without it nothing would ever copy the event.
			if got := count(t, pair.Old.Pool, "pgshift.repair_log", "table_name = 'events' AND key = ARRAY[$1::bigint::text]", ev.ID); got == 0 {
				t.Fatalf("old's repair log has no entry for event %d acknowledged while new was down", ev.ID)
			}

			if err := newSrv.Launched.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitDrained(t, f, 60*time.Second)
			if got := count(t, pair.New.Pool, "events", "id = $1", ev.ID); got != 1 {
				t.Fatalf("event %d acknowledged while new was down is not on new after the drain", ev.ID)
			}
			if got := count(t, pair.New.Pool, "posts", "id = $1", post.ID); got != 1 {
				t.Fatalf("post %v acknowledged while new was down is not on new after the drain", post.ID)
			}
			requireEqualSides(t, pair.Old.Pool, pair.New.Pool)
		})
	}
}

// TestReturningKeyInsertNotRepairedAwayBeforeNewCommits: under new's
// authority an insert whose key new assigns (RETURNING) commits on old, with
// its pull record, before it commits on new. A repair pass that claims that
// record in between (`pgshift repair`, or a worker with a short grace) must
// not read new's not-yet-committed "no such row" and delete old's copy: the
// row's lock on new, which the repair takes, is held by the write from its
// statement on. Seed 62153 of the history checker lost a serial insert
// from old this way.
func TestReturningKeyInsertNotRepairedAwayBeforeNewCommits(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageLive, flags.StageRampdown} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			pair := pgtest.NewPair(t, pgtest.Domain)
			r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: pair.Old.Pool, New: pair.New.Pool})
			if err != nil {
				t.Fatal(err)
			}
			var armed atomic.Bool
			drained := make(chan error, 1)
			cfg := dualwrite.WithBeforeCommit(dualwrite.Config{Old: pair.Old.Pool, New: pair.New.Pool,
				Stages: flags.Static(stage), RepairDisabled: true},
				func(side flags.Side, authoritative bool, _ uint32) {
					if side != flags.SideNew || !authoritative || !armed.Swap(false) {
						return
					}
					// Old has committed the event and its pull record;
					// new's COMMIT waits here while a repair pass runs. It
					// may end (it must not have deleted old's copy) or wait
					// for the row's lock on new (then it ends after the
					// COMMIT).
					go func() {
						_, err := r.Drain(context.Background())
						drained <- err
					}()
					// Wait until the pass has ended, or waits for a lock
					// on new (the row's, held by this write).
					for range 1000 {
						select {
						case err := <-drained:
							drained <- err
							return
						case <-time.After(10 * time.Millisecond):
						}
						var waiting int
						if err := pair.New.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
							WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
							t.Error(err)
							return
						}
						if waiting > 0 {
							return
						}
					}
					t.Error("the repair pass neither ended nor waited for a lock on new within 10 s")
				})
			f, err := dualwrite.New(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(f.Close)
			store := repo.New(f)
			ctx := userCtx("returning")
			owner, err := store.Users.Create(ctx, repo.NewUser{Email: "owner@example.com", Name: "Owner"})
			if err != nil {
				t.Fatal(err)
			}
			f.Wait()
			armed.Store(true)
			ev, err := store.Events.Create(ctx, repo.NewEvent{UserID: owner.ID, Kind: "signup"})
			if err != nil {
				t.Fatalf("Events.Create: %v", err)
			}
			if armed.Load() {
				t.Fatal("the write sent no COMMIT on new as its authoritative side")
			}
			if err := <-drained; err != nil {
				t.Fatalf("the repair pass between the COMMITs: %v", err)
			}
			f.Wait()
			if _, err := r.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := count(t, pair.Old.Pool, "events", "id = $1", ev.ID); got != 1 {
				t.Fatalf("event %d, acknowledged, is not on old after a repair pass ran between old's COMMIT and new's", ev.ID)
			}
			requireEqualSides(t, pair.Old.Pool, pair.New.Pool)
		})
	}
}
