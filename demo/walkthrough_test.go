package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// A short walkthrough migrates the seeded application from off to complete
// under load with no failed request and both sides equal at the end: with
// the databases reached directly, and behind PgBouncer in transaction
// pooling (the facade, the repair worker, backfill, verify and the gates
// all through it).
func TestWalkthroughShort(t *testing.T) {
	t.Parallel()
	for _, pooling := range pgtest.Poolings() {
		t.Run(pooling.String(), func(t *testing.T) {
			t.Parallel()
			walkthroughShort(t, pooling)
		})
	}
}

func walkthroughShort(t *testing.T, pooling pgtest.Pooled) {
	ctx := context.Background()
	pair := pgtest.NewPair(t, pgtest.Empty).Via(t, pooling)
	dbs := &databases{urls: [2]string{pair.Old.URL, pair.New.URL}, nonDurable: true}
	var err error
	if dbs.old, err = openPool(ctx, "old", pair.Old.URL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dbs.old.Close)
	if dbs.new, err = openPool(ctx, "new", pair.New.URL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dbs.new.Close)

	var out strings.Builder
	ok, err := runWalkthrough(ctx, dbs, walkOptions{
		Step: 200 * time.Millisecond, Accounts: 16, Workers: 4, Addr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("walkthrough failed; its report is above")
	}
	// The gates into live count the moved cohort's own shadow reads: the
	// testers are 2 of the 16 accounts, the pro users 2 more.
	for _, want := range []string{"[1/9] off", "[3/9] backfill", "refused: verify equal",
		"testers 123, 456 shadow -> live: 6 gates met; shadow reads ", "of the cohort's (2 users) in the last 10m0s",
		"IN/US pro users (rule 2) shadow -> live: 6 gates met; shadow reads ",
		"[9/9] complete", "PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q", want)
		}
	}
}
