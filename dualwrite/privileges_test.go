package dualwrite_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestNewRefusesARoleThatCannotOrderWrites starts the facade as an
// application role granted pgshift's schema and tables but not USAGE on its
// sequences: New refuses, naming the grant, since every dual write draws its
// rows' order from pgshift.row_order on new and would otherwise go on
// unordered. With the README's grants it starts.
func TestNewRefusesARoleThatCannotOrderWrites(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	ctx := context.Background()
	role := "app_" + pair.New.Name
	grant := func(db *pgtest.DB, sequences bool) *pgxpool.Pool {
		r := pgx.Identifier{role}.Sanitize()
		pgtest.Exec(t, db.Pool, "CREATE ROLE "+r+" LOGIN")
		t.Cleanup(func() {
			_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+r+" CASCADE")
			_, _ = db.Pool.Exec(context.Background(), "DROP ROLE "+r)
		})
		pgtest.Exec(t, db.Pool, "GRANT USAGE ON SCHEMA pgshift TO "+r)
		pgtest.Exec(t, db.Pool, "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgshift, public TO "+r)
		if sequences {
			pgtest.Exec(t, db.Pool, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgshift TO "+r)
		}
		cfg, err := pgxpool.ParseConfig(db.URL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.User = role
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	oldPool, newPool := grant(pair.Old, true), grant(pair.New, false)
	stages := &stageVar{}
	stages.Set(flags.StageDualWrite)
	_, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: stages, RepairDisabled: true})
	if err == nil || !strings.Contains(err.Error(), "GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgshift") || !strings.Contains(err.Error(), "new database") {
		t.Fatalf("New as a role without USAGE on pgshift.row_order: %v, want a refusal naming the new database and the grant", err)
	}
	pgtest.Exec(t, pair.New.Pool, "GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgshift TO "+pgx.Identifier{role}.Sanitize())
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: stages, RepairDisabled: true})
	if err != nil {
		t.Fatalf("New after the grant: %v", err)
	}
	f.Close()
}
