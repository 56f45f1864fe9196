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
// then puts the user in each request's context.
func Example() {
	ctx := context.Background()
	oldPool, err := pgxpool.New(ctx, os.Getenv("PGSHIFT_OLD_URL"))
	if err != nil {
		log.Fatal(err)
	}
	newPool, err := pgxpool.New(ctx, os.Getenv("PGSHIFT_NEW_URL"))
	if err != nil {
		log.Fatal(err)
	}
	stages, err := flags.NewFileEvaluator(ctx, "flags.json")
	if err != nil {
		log.Fatal(err)
	}
	defer stages.Close()
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: stages})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	store := repo.New(f)

	// Per request: who is asking, and what the flags may target.
	ctx = flags.WithUser(ctx, "123", map[string]any{"country": "IN", "plan": "pro"})
	u, err := store.Users.Create(ctx, repo.NewUser{Email: "ada@example.com", Name: "Ada", Country: "IN", Plan: "pro"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Name)
}
