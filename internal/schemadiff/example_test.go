package schemadiff_test

import (
	"context"
	"encoding/json"
	"log"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/schemadiff"
)

// Compare schema public of two databases, print the differences for a person
// and as JSON. (Compiled, not run: it needs two databases.)
func ExampleDiff() {
	ctx := context.Background()
	oldPool, err := pgxpool.New(ctx, os.Getenv("PGSHIFT_OLD_URL"))
	if err != nil {
		log.Fatal(err)
	}
	newPool, err := pgxpool.New(ctx, os.Getenv("PGSHIFT_NEW_URL"))
	if err != nil {
		log.Fatal(err)
	}
	report, err := schemadiff.Diff(ctx, oldPool, newPool, "public", schemadiff.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_ = report.Write(os.Stdout)
	_ = json.NewEncoder(os.Stdout).Encode(report)
	if !report.Equal() {
		os.Exit(1)
	}
}
