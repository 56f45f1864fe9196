package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
)

// The runnable example connects through PGSHIFT_OLD_URL and PGSHIFT_NEW_URL,
// as an application would.
func TestMain(m *testing.M) { pgtest.MainExporting(m, "PGSHIFT_OLD_URL", "PGSHIFT_NEW_URL") }

func setup(t *testing.T, stage flags.Stage) (*repo.Store, *dualwrite.Facade, *pgtest.Pair) {
	t.Helper()
	pair := pgtest.NewPair(t, pgtest.Domain)
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		if _, err := dualwrite.InstallCapture(context.Background(), db.Pool, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	// Strict: a repository method that changes a row it does not Touch fails.
	f, err := dualwrite.New(context.Background(), dualwrite.Config{Old: pair.Old.Pool, New: pair.New.Pool, Stages: flags.Static(stage), Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return repo.New(f), f, pair
}

// TestRepositoriesRoundTrip runs every repository method in dualwrite and
// checks the answers and that both sides end up with the same rows.
func TestRepositoriesRoundTrip(t *testing.T) {
	t.Parallel()
	s, f, pair := setup(t, flags.StageDualWrite)
	ctx := flags.WithUser(context.Background(), "owner", nil)
	u, err := s.Users.Create(ctx, repo.NewUser{Email: "o@example.com", Name: "Owner"})
	if err != nil || u.Plan != "free" {
		t.Fatalf("Create = %+v, %v (plan defaults to free)", u, err)
	}
	p, err := s.Posts.Create(ctx, repo.NewPost{UserID: u.ID, Title: "hello", Body: "world"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Posts.Update(ctx, p.ID, repo.PostUpdate{Title: "hello 2"}); err != nil {
		t.Fatal(err)
	}
	posts, err := s.Posts.ListByUser(ctx, u.ID, uuid.Nil, 10)
	if err != nil || len(posts) != 1 || posts[0].Title != "hello 2" {
		t.Fatalf("ListByUser = %+v, %v", posts, err)
	}
	e, err := s.Events.Create(ctx, repo.NewEvent{UserID: u.ID, Kind: "login", Payload: json.RawMessage(`{"a":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Events.Update(ctx, e.ID, "seen", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Events.Get(ctx, e.ID); err != nil || got.Kind != "seen" {
		t.Fatalf("Events.Get = %+v, %v", got, err)
	}
	if evs, err := s.Events.ListByUser(ctx, u.ID, 0, 10); err != nil || len(evs) != 1 {
		t.Fatalf("Events.ListByUser = %+v, %v", evs, err)
	}
	if users, err := s.Users.List(ctx, uuid.Nil, 10); err != nil || len(users) != 1 {
		t.Fatalf("Users.List = %+v, %v", users, err)
	}
	if err := s.Events.Delete(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Posts.Delete(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Posts.Delete twice":   s.Posts.Delete(ctx, p.ID),
		"Events.Delete gone":   s.Events.Delete(ctx, e.ID),
		"Users.Delete unknown": s.Users.Delete(ctx, uuid.New()),
	} {
		if !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("%s: %v, want repo.ErrNotFound", name, err)
		}
	}
	if _, err := s.Users.Update(ctx, uuid.New(), repo.UserUpdate{Name: "x"}); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("Users.Update unknown: %v, want repo.ErrNotFound", err)
	}
	f.Wait()
	for _, table := range []string{"users", "posts", "events"} {
		var o, n string
		q := "SELECT coalesce(string_agg(t::text, ',' ORDER BY id), '') FROM " + table + " t"
		if err := pair.Old.Pool.QueryRow(ctx, q).Scan(&o); err != nil {
			t.Fatal(err)
		}
		if err := pair.New.Pool.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if o != n {
			t.Fatalf("%s differs:\nold %s\nnew %s", table, o, n)
		}
	}
}

// TestDeleteOfRowMissingOnOtherSideIsRepaired covers a row the other side
// never had (not backfilled yet): deleting it succeeds for the caller, and
// the repair log keeps an entry instead of claiming the other side agreed.
func TestDeleteOfRowMissingOnOtherSideIsRepaired(t *testing.T) {
	t.Parallel()
	s, f, pair := setup(t, flags.StageDualWrite)
	ctx := context.Background()
	id := uuid.New()
	if _, err := pair.Old.Pool.Exec(ctx, "INSERT INTO users (id, email, name) VALUES ($1, 'pre@example.com', 'pre')", id); err != nil {
		t.Fatal(err)
	}
	if err := s.Users.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.Wait()
	if st := f.Stats(); st.OtherMissed != 1 {
		t.Fatalf("OtherMissed = %d, want 1 (the other side deleted nothing)", st.OtherMissed)
	}
	if rep, err := f.Repairer().Drain(ctx); err != nil || rep.OldToNew != 1 {
		t.Fatalf("Drain = %+v, %v; want one entry settled from old", rep, err)
	}
}

// TestDeleteUserWithPostsAndEventsInStrictMode: deleting a user deletes its
// posts and events by cascade; in strict mode the delete succeeds only
// because it Touches them, and both sides end up without them.
func TestDeleteUserWithPostsAndEventsInStrictMode(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			s, f, pair := setup(t, stage)
			ctx := flags.WithUser(context.Background(), "owner", nil)
			u, err := s.Users.Create(ctx, repo.NewUser{Email: "d@example.com", Name: "D"})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if _, err := s.Posts.Create(ctx, repo.NewPost{UserID: u.ID, Title: "p"}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Events.Create(ctx, repo.NewEvent{UserID: u.ID, Kind: "k", Payload: json.RawMessage(`{}`)}); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
			}
			if err := s.Users.Delete(ctx, u.ID); err != nil {
				t.Fatalf("Users.Delete of a user with posts and events: %v", err)
			}
			f.Wait()
			for _, db := range []*pgtest.DB{pair.Old, pair.New} {
				var n int
				if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM posts) + (SELECT count(*) FROM events)`).Scan(&n); err != nil || n != 0 {
					t.Fatalf("%s: %d rows left (err %v), want none", db.Name, n, err)
				}
			}
			if st := f.Stats(); st.OtherMissed != 0 {
				t.Fatalf("OtherMissed = %d, want 0", st.OtherMissed)
			}
		})
	}
}
