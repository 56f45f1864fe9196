package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/repo/db"
)

// account is one simulated user of the demo application. Key is what the
// X-User-ID header carries and what the flags see as the OpenFeature
// targeting key (the routing key); the account's row in the users table has
// the id UserID, derived from Key, so "123" is always the same user.
type account struct {
	Key     string    `json:"key"`
	UserID  uuid.UUID `json:"user_id"`
	Name    string    `json:"name"`
	Country string    `json:"country"`
	Plan    string    `json:"plan"`
}

// accountNamespace derives users' ids from account keys (UUIDv5).
var accountNamespace = uuid.MustParse("6f1c3c52-6a4e-4f0e-9d55-0c3bb1b7e0a1")

// userIDOf is the users.id of the account with routing key key.
func userIDOf(key string) uuid.UUID {
	return uuid.NewSHA1(accountNamespace, []byte("account:"+key))
}

// testers are the first cohort of the DevCycle write-up: two known users.
var testers = []account{
	{Key: "123", Name: "Tess Tester", Country: "US", Plan: "pro"},
	{Key: "456", Name: "Theo Tester", Country: "IN", Plan: "free"},
}

var (
	firstNames = []string{"Ada", "Grace", "Linus", "Barbara", "Ken", "Radia", "Dennis", "Frances", "Edsger", "Margaret", "Alan", "Hedy"}
	countries  = []string{"IN", "US", "DE", "BR", "JP", "GB"}
)

// makeAccounts returns the two testers and n-2 more accounts ("1000",
// "1001", ...) with a spread of countries and plans (every third is pro).
// It is deterministic: the same n gives the same accounts.
func makeAccounts(n int) []account {
	out := make([]account, 0, max(n, len(testers)))
	out = append(out, testers...)
	for i := 0; len(out) < n; i++ {
		plan := "free"
		if i%3 == 0 {
			plan = "pro"
		}
		out = append(out, account{
			Key:     strconv.Itoa(1000 + i),
			Name:    fmt.Sprintf("%s %d", firstNames[i%len(firstNames)], 1000+i),
			Country: countries[(i/3)%len(countries)],
			Plan:    plan,
		})
	}
	for i := range out {
		out[i].UserID = userIDOf(out[i].Key)
	}
	return out
}

// attrs are the account's attributes as flag rules see them.
func (a account) attrs() map[string]any {
	return map[string]any{"country": a.Country, "plan": a.Plan}
}

// seed inserts every account's user row and postsEach posts per account
// into each pool, with the same ids and timestamps everywhere. It writes
// straight through the generated queries: this is the data the application
// had before the migration began (seeding one pool), or data already copied
// (seeding both). It is idempotent for the users; run it once.
func seed(ctx context.Context, accounts []account, postsEach int, pools ...*pgxpool.Pool) error {
	q := db.New()
	at := time.Now().UTC().Truncate(time.Microsecond)
	for _, pool := range pools {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		for _, acc := range accounts {
			if _, err := q.CreateUser(ctx, tx, db.CreateUserParams{
				ID: acc.UserID, Email: acc.Key + "@demo.pgshift.dev", Name: acc.Name,
				Country: acc.Country, Plan: acc.Plan, CreatedAt: at,
			}); err != nil {
				_ = tx.Rollback(ctx)
				return fmt.Errorf("seed user %s: %w", acc.Key, err)
			}
			for i := range postsEach {
				id := uuid.NewSHA1(acc.UserID, []byte(strconv.Itoa(i)))
				if _, err := q.CreatePost(ctx, tx, db.CreatePostParams{
					ID: id, UserID: acc.UserID, Title: fmt.Sprintf("Hello #%d from %s", i+1, acc.Name),
					Body: "Seeded before the migration began.", CreatedAt: at,
				}); err != nil {
					_ = tx.Rollback(ctx)
					return fmt.Errorf("seed post of %s: %w", acc.Key, err)
				}
			}
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}
