package sequences_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/sequences"
)

// Show what would move, then move new's sequences 10,000 past old's before
// writes move to new. (Compiled, not run: it needs two databases.)
func ExampleSync() {
	ctx := context.Background()
	var sides [2]*pgx.Conn // old, new; a *pgxpool.Pool serves as well
	for i, env := range []string{"PGSHIFT_OLD_URL", "PGSHIFT_NEW_URL"} {
		conn, err := pgx.Connect(ctx, os.Getenv(env))
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _ = conn.Close(ctx) }()
		sides[i] = conn
	}
	opts := sequences.Options{Gap: 10000}
	plan, err := sequences.Status(ctx, sides[0], sides[1], "public", opts)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range plan {
		fmt.Printf("%s: old at %d, new at %d, would move: %v\n", m.Sequence, m.Old, m.NewBefore, m.Moved)
	}
	if _, err := sequences.Sync(ctx, sides[0], sides[1], "public", opts); err != nil {
		log.Fatal(err)
	}
}
