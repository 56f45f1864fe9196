package dualwrite_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
)

// TestKilledWriterConverges runs a child process that writes through the
// facade and prints every write it got an acknowledgement for, and kills it
// with SIGKILL at a random moment, several times. Afterwards a repair pass
// must leave both sides equal, with every acknowledged write on both.
// Directly and through PgBouncer.
func TestKilledWriterConverges(t *testing.T) {
	t.Parallel()
	if os.Getenv("DUALWRITE_CHILD") != "" {
		return
	}
	for _, pooling := range pgtest.Poolings() {
		t.Run(pooling.String(), func(t *testing.T) {
			t.Parallel()
			direct := pgtest.NewPair(t, pgtest.Domain)
			testKilledWriterConverges(t, direct, direct.Via(t, pooling))
		})
	}
}

func testKilledWriterConverges(t *testing.T, direct, pair *pgtest.Pair) {
	acked := map[string]bool{}
	for round := 0; round < 5; round++ {
		stage := []string{"dualwrite", "live"}[round%2]
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildWriter$", "-test.count=1")
		cmd.Env = append(os.Environ(), "DUALWRITE_CHILD="+stage,
			"CHILD_OLD_URL="+pair.Old.URL, "CHILD_NEW_URL="+pair.New.URL, fmt.Sprintf("CHILD_ROUND=%d", round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Wait until the child is writing, then kill it a random time later.
		var started bool
		timeout := time.After(60 * time.Second)
		for !started {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child exited before writing")
				}
				if strings.HasPrefix(l, "ACK ") {
					acked[strings.TrimPrefix(l, "ACK ")] = true
					started = true
				}
			case <-timeout:
				t.Fatal("child did not start writing")
			}
		}
		kill := time.After(time.Duration(50+rand.IntN(400)) * time.Millisecond)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if strings.HasPrefix(l, "ACK ") {
					acked[strings.TrimPrefix(l, "ACK ")] = true
				}
			case <-kill:
				_ = cmd.Process.Signal(syscall.SIGKILL)
				kill = nil
			}
		}
		_ = cmd.Wait()
	}
	if len(acked) < 5 {
		t.Fatalf("only %d acknowledged writes over 5 rounds", len(acked))
	}
	// The last child is dead, but a server may still be running what it
	// sent before it died (a pipelined batch ending in COMMIT, behind
	// PgBouncer too): traffic has stopped only once no session of either
	// database is busy.
	waitQuiet(t, direct)
	// A fresh process's facade repairs whatever the killed ones left.
	b := setupOn(t, pair, flags.StageDualWrite)
	if _, err := b.facade.Repairer().Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, b.facade, 60*time.Second)
	requireEqualSides(t, pair.Old.Pool, pair.New.Pool)
	for _, p := range []*pgxpool.Pool{pair.Old.Pool, pair.New.Pool} {
		for email := range acked {
			if count(t, p, "users", "email = $1", email) != 1 {
				t.Fatalf("acknowledged write %s missing", email)
			}
		}
	}
	t.Logf("%d acknowledged writes over 5 killed children, all on both sides", len(acked))
}

// TestChildWriter is the child half of TestKilledWriterConverges: it writes
// until it is killed, printing "ACK <email>" after each acknowledged create.
func TestChildWriter(t *testing.T) {
	stage := os.Getenv("DUALWRITE_CHILD")
	if stage == "" {
		return // only meaningful as the child process
	}
	st, err := flags.ParseStage(stage)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	oldPool, err := pgxpool.New(ctx, os.Getenv("CHILD_OLD_URL"))
	if err != nil {
		t.Fatal(err)
	}
	newPool, err := pgxpool.New(ctx, os.Getenv("CHILD_NEW_URL"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := dualwrite.New(ctx, dualwrite.Config{Old: oldPool, New: newPool, Stages: flags.Static(st),
		RepairDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	store := repo.New(f)
	out := bufio.NewWriter(os.Stdout)
	round := os.Getenv("CHILD_ROUND")
	for i := 0; ; i++ {
		ctx := flags.WithUser(ctx, fmt.Sprintf("child-%d", i%7), nil)
		email := fmt.Sprintf("r%s-%d@example.com", round, i)
		u, err := store.Users.Create(ctx, repo.NewUser{Email: email, Name: "child"})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(out, "ACK %s\n", email)
		_ = out.Flush()
		if _, err := store.Users.Update(ctx, u.ID, repo.UserUpdate{Name: fmt.Sprintf("v%d", i), Country: "SE", Plan: "pro"}); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := store.Posts.Create(ctx, repo.NewPost{UserID: u.ID, Title: "t"}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitQuiet waits until no session of either database of pair (connected
// to directly) is running a statement or holding a transaction open.
func waitQuiet(t *testing.T, pair *pgtest.Pair) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		for {
			busy := count(t, db.Pool, "pg_stat_activity", "datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state <> 'idle'")
			if busy == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("database %s: %d sessions still busy 30s after the last writer was killed", db.Name, busy)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
