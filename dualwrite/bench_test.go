package dualwrite_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/repo"
	"github.com/pgshift/pgshift/repo/db"
)

// BenchmarkRead compares a primary-key read through the facade in stage off
// with the same generated query on pgx directly, on the same pool.
//
//	go test -run '^$' -bench . -benchmem -count 6 ./dualwrite/
func BenchmarkRead(b *testing.B) {
	bd := setup(b, flags.StageOff)
	ctx := flags.WithUser(context.Background(), "bench", nil)
	u, err := bd.store.Users.Create(ctx, repo.NewUser{Email: "bench@example.com", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	q := db.New()
	b.Run("pgx-direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := q.GetUser(ctx, bd.pair.Old.Pool, u.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("facade-off", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := bd.store.Users.Get(ctx, u.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWrite compares a single-row insert on one database (the generated
// query on pgx directly, autocommit) with the same insert through the facade
// in stage off (one side, in a transaction) and in dualwrite (both sides,
// with the repair log).
func BenchmarkWrite(b *testing.B) {
	q := db.New()
	n := 0
	params := func() db.CreateUserParams {
		n++
		return db.CreateUserParams{ID: uuid.Must(uuid.NewV7()), Email: fmt.Sprintf("b%d@example.com", n), Name: "bench", Plan: "free"}
	}
	b.Run("pgx-direct", func(b *testing.B) {
		bd := setup(b, flags.StageOff)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := q.CreateUser(ctx, bd.pair.Old.Pool, params()); err != nil {
				b.Fatal(err)
			}
		}
	})
	// What a migrator that writes one side after the other pays (LaunchDarkly's
	// Go SDK does so): the same insert on old, then on new, no repair log.
	b.Run("pgx-both-sequential", func(b *testing.B) {
		bd := setup(b, flags.StageOff)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			p := params()
			if _, err := q.CreateUser(ctx, bd.pair.Old.Pool, p); err != nil {
				b.Fatal(err)
			}
			if _, err := q.CreateUser(ctx, bd.pair.New.Pool, p); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, stage := range []flags.Stage{flags.StageOff, flags.StageDualWrite} {
		b.Run("facade-"+stage.String(), func(b *testing.B) {
			bd := setup(b, stage)
			ctx := flags.WithUser(context.Background(), "bench", nil)
			b.ReportAllocs()
			for b.Loop() {
				p := params()
				if _, err := bd.store.Users.Create(ctx, repo.NewUser{Email: p.Email, Name: p.Name}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			bd.facade.Wait()
		})
	}
}
