package repo_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/repo"
)

// An application wires the repositories to both databases and the flags,
// then puts the user in each request's context. Here testdata/flags.json
// sends testers 123 and 456 to live and everyone else to dualwrite.
func Example() {
	ctx := context.Background()
	oldPool, err := pgxpool.New(ctx, os.Getenv("PGSHIFT_OLD_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer oldPool.Close()
	newPool, err := pgxpool.New(ctx, os.Getenv("PGSHIFT_NEW_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer newPool.Close()
	stages, err := flags.NewFileEvaluator(ctx, "testdata/flags.json")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = stages.Close() }()
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: stages})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	store := repo.New(f)

	for _, user := range []string{"123", "789"} {
		// Per request: who is asking, and what the flags may target.
		ctx, outcome := dualwrite.WithOutcome(flags.WithUser(ctx, user, map[string]any{"country": "IN", "plan": "pro"}))
		u, err := store.Users.Create(ctx, repo.NewUser{Email: user + "@example.com", Name: "User " + user})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: stage %s, answered by %s\n", u.Name, outcome.Stage, outcome.Served)
	}
	// Output:
	// User 123: stage live, answered by new
	// User 789: stage dualwrite, answered by old
}
