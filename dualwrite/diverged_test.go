package dualwrite_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestDivergedOtherSideCommitsNothingUnrecorded: a write function that lets
// each side make its own serial key (sqlc's plain CreateAuthor) sees the
// other side make a different one and returns ErrDiverged. That side must
// not have committed its row with no repair-log entry naming it: after the
// drain both sides hold the authoritative row and nothing else.
func TestDivergedOtherSideCommitsNothingUnrecorded(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageShadow, flags.StageLive, flags.StageRampdown} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t, stage)
			for _, p := range []*pgtest.DB{b.pair.Old, b.pair.New} {
				pgtest.Exec(t, p.Pool, "CREATE TABLE authors (id bigserial PRIMARY KEY, name text NOT NULL)")
			}
			// The other side's sequence is ahead, as new's is after a crash
			// (or old's in live after sync-sequences).
			other := b.pool(stage.Plan().Authoritative.Other())
			pgtest.Exec(t, other, "SELECT setval('authors_id_seq', 32)")
			id, err := dualwrite.Write(userCtx("author"), b.facade, dualwrite.Op{Name: "authors.create", OneStatement: true},
				func(ctx context.Context, tx *dualwrite.Tx, prev *int64) (int64, error) {
					var id int64
					if err := tx.QueryRow(ctx, "INSERT INTO authors (name) VALUES ('Ursula') RETURNING id").Scan(&id); err != nil {
						return 0, err
					}
					tx.Touch("authors", id)
					if prev != nil && *prev != id {
						return 0, dualwrite.ErrDiverged
					}
					return id, nil
				})
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			b.facade.Wait()
			if n := count(t, other, "authors", "id <> $1", id); n != 0 {
				t.Fatalf("the other side committed %d rows under a key the authoritative side did not make", n)
			}
			waitDrained(t, b.facade, 30*time.Second)
			o, n := pgtest.Dump(t, b.pair.Old.Pool, "authors"), pgtest.Dump(t, b.pair.New.Pool, "authors")
			if len(o) != 1 || len(n) != 1 || o[0] != n[0] {
				t.Fatalf("after the drain old has %v, new has %v; want the authoritative row on both", o, n)
			}
		})
	}
}
