package dualwrite_test

import (
	"context"
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
