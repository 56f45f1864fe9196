package queries_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo/db"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestGeneratedQueriesRoundTrip runs every generated query on both servers,
// once on the pool and once inside a transaction, and checks what comes back.
func TestGeneratedQueriesRoundTrip(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	for name, side := range map[string]*pgtest.DB{"old": pair.Old, "new": pair.New} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q := db.New()
			now := time.Now().UTC().Truncate(time.Microsecond)
			u, err := q.CreateUser(ctx, side.Pool, db.CreateUserParams{
				ID: uuid.Must(uuid.NewV7()), Email: "ada@example.com", Name: "Ada", Country: "IN", Plan: "pro", CreatedAt: now,
			})
			if err != nil {
				t.Fatal(err)
			}
			if !u.CreatedAt.Equal(now) || !u.UpdatedAt.Equal(now) || u.Plan != "pro" {
				t.Fatalf("created user = %+v", u)
			}
			got, err := q.GetUser(ctx, side.Pool, u.ID)
			if err != nil || got.Email != "ada@example.com" {
				t.Fatalf("GetUser = %+v, %v", got, err)
			}

			// Posts inside one transaction: the same Queries value runs on a tx.
			tx, err := side.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []uuid.UUID
			for i := 0; i < 5; i++ {
				p, err := q.CreatePost(ctx, tx, db.CreatePostParams{ID: uuid.Must(uuid.NewV7()), UserID: u.ID, Title: "t", Body: "b", CreatedAt: now})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, p.ID)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			page1, err := q.ListPostsByUser(ctx, side.Pool, db.ListPostsByUserParams{UserID: u.ID, AfterID: uuid.Nil, PageSize: 3})
			if err != nil || len(page1) != 3 || page1[0].ID != ids[0] {
				t.Fatalf("first page = %v, %v", page1, err)
			}
			page2, err := q.ListPostsByUser(ctx, side.Pool, db.ListPostsByUserParams{UserID: u.ID, AfterID: page1[2].ID, PageSize: 3})
			if err != nil || len(page2) != 2 || page2[1].ID != ids[4] {
				t.Fatalf("second page = %v, %v", page2, err)
			}
			later := now.Add(time.Second)
			p, err := q.UpdatePost(ctx, side.Pool, db.UpdatePostParams{ID: ids[0], Title: "new", Body: "nb", UpdatedAt: later})
			if err != nil || p.Title != "new" || !p.UpdatedAt.Equal(later) {
				t.Fatalf("UpdatePost = %+v, %v", p, err)
			}
			if n, err := q.DeletePost(ctx, side.Pool, ids[1]); err != nil || n != 1 {
				t.Fatalf("DeletePost = %d, %v", n, err)
			}
			if _, err := q.GetPost(ctx, side.Pool, ids[1]); !errors.Is(err, pgx.ErrNoRows) {
				t.Fatalf("GetPost after delete: %v, want pgx.ErrNoRows", err)
			}

			// events: identity key assigned on one side, given explicitly on the other.
			e, err := q.CreateEvent(ctx, side.Pool, db.CreateEventParams{UserID: u.ID, Kind: "login", Payload: json.RawMessage(`{"ip": "127.0.0.1"}`), CreatedAt: now})
			if err != nil || e.ID == 0 {
				t.Fatalf("CreateEvent = %+v, %v", e, err)
			}
			e2, err := q.CreateEventWithID(ctx, side.Pool, db.CreateEventWithIDParams{ID: e.ID + 100, UserID: u.ID, Kind: "logout", Payload: json.RawMessage(`{}`), CreatedAt: now})
			if err != nil || e2.ID != e.ID+100 {
				t.Fatalf("CreateEventWithID = %+v, %v", e2, err)
			}
			ev, err := q.ListEventsByUser(ctx, side.Pool, db.ListEventsByUserParams{UserID: u.ID, AfterID: 0, PageSize: 10})
			if err != nil || len(ev) != 2 || string(ev[0].Payload) != `{"ip": "127.0.0.1"}` {
				t.Fatalf("ListEventsByUser = %+v, %v", ev, err)
			}
			if _, err := q.UpdateEvent(ctx, side.Pool, db.UpdateEventParams{ID: e.ID, Kind: "seen", Payload: json.RawMessage(`[1]`)}); err != nil {
				t.Fatal(err)
			}
			if got, err := q.GetEvent(ctx, side.Pool, e.ID); err != nil || got.Kind != "seen" {
				t.Fatalf("GetEvent = %+v, %v", got, err)
			}
			if n, err := q.DeleteEvent(ctx, side.Pool, e2.ID); err != nil || n != 1 {
				t.Fatalf("DeleteEvent = %d, %v", n, err)
			}

			u2, err := q.UpdateUser(ctx, side.Pool, db.UpdateUserParams{ID: u.ID, Name: "Ada L.", Country: "US", Plan: "free", UpdatedAt: later})
			if err != nil || u2.Country != "US" || !u2.UpdatedAt.Equal(later) {
				t.Fatalf("UpdateUser = %+v, %v", u2, err)
			}
			users, err := q.ListUsers(ctx, side.Pool, db.ListUsersParams{AfterID: uuid.Nil, PageSize: 10})
			if err != nil || len(users) != 1 {
				t.Fatalf("ListUsers = %v, %v", users, err)
			}
			// Deleting the owner cascades to its posts and events.
			if n, err := q.DeleteUser(ctx, side.Pool, u.ID); err != nil || n != 1 {
				t.Fatalf("DeleteUser = %d, %v", n, err)
			}
			var left int
			if err := side.Pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM posts) + (SELECT count(*) FROM events)").Scan(&left); err != nil || left != 0 {
				t.Fatalf("rows left after cascade = %d, %v", left, err)
			}
		})
	}
}
