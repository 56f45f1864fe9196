package dualwrite_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// TestListenDeliversEachNotificationOnce has 8 writers send a notification
// with each write (its payload unique) while the stage moves through the
// whole migration, flipping between shadow and live several times: the
// listener hands every acknowledged write's notification to its handler
// exactly once, though in the dual stages both sides send it.
func TestListenDeliversEachNotificationOnce(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	b := setupOn(t, pair, flags.StageOff)
	users, _ := seedDomain(t, pair)
	conf := func(db *pgtest.DB) *pgx.ConnConfig {
		c, err := pgx.ParseConfig(db.URL)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var mu sync.Mutex
	delivered := map[string]int{}
	ctx, stop := context.WithCancel(context.Background())
	listening := make(chan error, 1)
	go func() {
		listening <- dualwrite.Listen(ctx, dualwrite.ListenConfig{
			Old: conf(pair.Old), New: conf(pair.New), Channel: "Orders",
			Handle: func(_ context.Context, n dualwrite.Notification) {
				mu.Lock()
				delivered[n.Payload]++
				mu.Unlock()
			},
		})
	}()
	waitListening(t, pair, "Orders")

	var acked sync.Map
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				payload := fmt.Sprintf("w%d-%d", w, i)
				id := users[(w+i)%len(users)]
				err := dualwrite.Exec(userCtx("n"), b.facade, dualwrite.Op{Name: "users.touch_and_notify"}, func(ctx context.Context, tx *dualwrite.Tx) error {
					tx.Touch("users", id)
					if _, err := tx.Exec(ctx, "UPDATE users SET name = $1 WHERE id = $2", payload, id); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "SELECT pg_notify('Orders', $1)", payload)
					return err
				})
				if err != nil {
					t.Errorf("write %s: %v", payload, err)
					return
				}
				acked.Store(payload, true)
			}
		})
	}
	phases := []flags.Stage{flags.StageOff, flags.StageDualWrite, flags.StageShadow}
	for range 4 {
		phases = append(phases, flags.StageLive, flags.StageShadow)
	}
	phases = append(phases, flags.StageLive, flags.StageRampdown, flags.StageComplete)
	for _, st := range phases {
		b.stage.Set(st)
		time.Sleep(150 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	b.facade.Wait()

	var want int
	acked.Range(func(any, any) bool { want++; return true })
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(delivered)
		mu.Unlock()
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a late echo would show now
	stop()
	if err := <-listening; !errors.Is(err, context.Canceled) {
		t.Errorf("Listen returned %v after its context ended, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	acked.Range(func(k, _ any) bool {
		if n := delivered[k.(string)]; n != 1 {
			t.Errorf("notification %s delivered %d times, want once", k, n)
		}
		return true
	})
	for p, n := range delivered {
		if _, ok := acked.Load(p); !ok {
			t.Errorf("notification %s delivered %d times, and no write sent it", p, n)
		}
	}
	t.Logf("%d notifications through %d stage changes, each delivered once", want, len(phases))
}

// waitListening returns once a session on each side of pair has run LISTEN
// on channel (pg_stat_activity shows a session's last statement), so no
// notification the test sends afterwards can precede its listener.
func waitListening(t *testing.T, pair *pgtest.Pair, channel string) {
	t.Helper()
	stmt := "LISTEN " + pgx.Identifier{channel}.Sanitize()
	deadline := time.Now().Add(30 * time.Second)
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		for {
			var n int
			err := db.Pool.QueryRow(context.Background(),
				"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = $1", stmt).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no session ran %s on %s within 30s", stmt, db.Name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
