package dualwrite_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// installCapture puts the capture triggers on the reference domain's tables
// on both sides.
func installCapture(t *testing.T, pair *pgtest.Pair) {
	t.Helper()
	for _, db := range []*pgtest.DB{pair.Old, pair.New} {
		if _, err := dualwrite.InstallCapture(context.Background(), db.Pool, "", nil); err != nil {
			t.Fatal(err)
		}
	}
}

// seedDomain inserts the same users, posts and events on both sides.
func seedDomain(t testing.TB, pair *pgtest.Pair) (users, posts []uuid.UUID) {
	t.Helper()
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 6 {
		users = append(users, uuid.Must(uuid.NewV7()))
		posts = append(posts, uuid.Must(uuid.NewV7()))
		for _, db := range []*pgtest.DB{pair.Old, pair.New} {
			pgtest.Exec(t, db.Pool, "INSERT INTO users (id, email, name, created_at, updated_at) VALUES ($1, $2, 'seed', $3, $3)",
				users[i], fmt.Sprintf("seed%d@example.com", i), at)
			pgtest.Exec(t, db.Pool, "INSERT INTO posts (id, user_id, title, created_at, updated_at) VALUES ($1, $2, 'p', $3, $3)",
				posts[i], users[i], at)
			pgtest.Exec(t, db.Pool, "INSERT INTO events (id, user_id, kind, created_at) VALUES ($1, $2, 'seed', $3)",
				int64(100+i), users[i], at)
		}
	}
	return users, posts
}

// TestCaptureWithoutTouch writes through raw SQL without a single Touch, in
// capture mode, while the other side is stopped: an UPDATE ... FROM, a
// DELETE that cascades to posts and events, a primary-key change, an
// insert. The capture triggers record every changed row; once the other
// side is back and the repair log drained, both sides are equal row for row.
func TestCaptureWithoutTouch(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			oldSrv, newSrv := pgtest.Dedicated(t)
			pair := pgtest.PairOn(t, oldSrv, newSrv, pgtest.Domain)
			installCapture(t, pair)
			users, posts := seedDomain(t, pair)
			b := setupOn(t, pair, stage, func(c *dualwrite.Config) { c.Capture = true })
			other := newSrv
			if stage.Plan().Authoritative == flags.SideNew {
				other = oldSrv
			}
			// The user is caught up before the outage: a first move to new
			// waits for old (TestFirstFlipWithOldSilentRefusesTheKey).
			catchUpFirst(t, pair.New.Pool, "capture", stage.Plan().Authoritative, readAs(b.store, "capture"))
			if err := other.Launched.Stop(); err != nil {
				t.Fatal(err)
			}
			ctx := userCtx("capture")
			newPost := uuid.Must(uuid.NewV7())
			for name, sql := range map[string][]any{
				"update-from": {`UPDATE users SET plan = v.plan FROM (VALUES ($1::uuid, 'pro'), ($2::uuid, 'team')) AS v (id, plan) WHERE users.id = v.id`, users[0], users[1]},
				"cascade":     {`DELETE FROM users WHERE id = $1`, users[2]},
				"key-change":  {`UPDATE posts SET id = $1 WHERE id = $2`, newPost, posts[3]},
				"insert":      {`INSERT INTO events (id, user_id, kind) VALUES (500, $1, 'raw')`, users[4]},
			} {
				err := dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "raw." + name}, func(ctx context.Context, tx *dualwrite.Tx) error {
					_, err := tx.Exec(ctx, sql[0].(string), sql[1:]...)
					return err
				})
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			b.facade.Wait()
			if err := other.Launched.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitDrained(t, b.facade, 60*time.Second)
			requireEqualSides(t, pair.Old.Pool, pair.New.Pool)
			// The test changed what it claims: the cascade removed posts and events.
			if n := count(t, pair.New.Pool, "posts", "user_id = $1", users[2]); n != 0 {
				t.Fatalf("cascaded posts still on new: %d", n)
			}
			if n := count(t, pair.New.Pool, "posts", "id = $1", newPost); n != 1 {
				t.Fatalf("the post's new key is not on new")
			}
		})
	}
}

// TestStrictFailsForgottenTouch runs strict mode: a write function that
// changes a row it did not Touch fails with an error naming the table and
// key, and commits nothing; one that Touches a row nothing changed succeeds
// with a warning.
func TestStrictFailsForgottenTouch(t *testing.T) {
	t.Parallel()
	for _, stage := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		t.Run(stage.String(), func(t *testing.T) {
			t.Parallel()
			pair := pgtest.NewPair(t, pgtest.Domain)
			installCapture(t, pair)
			users, _ := seedDomain(t, pair)
			var logs bytes.Buffer
			b := setupOn(t, pair, stage, func(c *dualwrite.Config) {
				c.Strict = true
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			ctx := userCtx("strict")
			err := dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "users.forgetful"}, func(ctx context.Context, tx *dualwrite.Tx) error {
				tx.Touch("users", users[0])
				_, err := tx.Exec(ctx, "UPDATE users SET name = 'x' WHERE id = ANY($1)", []uuid.UUID{users[0], users[1]})
				return err
			})
			var nt *dualwrite.NotTouchedError
			if !errors.As(err, &nt) || nt.Table != "users" || len(nt.Key) != 1 || nt.Key[0] != users[1].String() ||
				!strings.Contains(err.Error(), users[1].String()) {
				t.Fatalf("err = %v, want a NotTouchedError naming users %s", err, users[1])
			}
			b.facade.Wait()
			for _, db := range []*pgtest.DB{pair.Old, pair.New} {
				if n := count(t, db.Pool, "users", "name = 'x'"); n != 0 {
					t.Fatalf("the failed write changed %d rows", n)
				}
			}
			err = dualwrite.Exec(ctx, b.facade, dualwrite.Op{Name: "users.overcautious"}, func(ctx context.Context, tx *dualwrite.Tx) error {
				tx.Touch("users", users[2])
				tx.Touch("users", users[3]) // not changed
				_, err := tx.Exec(ctx, "UPDATE users SET name = 'y' WHERE id = $1", users[2])
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), "did not change") || !strings.Contains(logs.String(), users[3].String()) {
				t.Fatalf("no warning about the untouched Touch:\n%s", logs.String())
			}
		})
	}
}

// TestCaptureInstallUninstall: installing capture twice changes nothing,
// TRUNCATE of a captured table is refused with an error that says why and
// what to do (and allowed when asked for), and Uninstall leaves nothing of
// pgshift's behind.
func TestCaptureInstallUninstall(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, func() *pgtest.Server { s, _ := pgtest.Servers(t); return s }(), pgtest.Domain)
	ctx := context.Background()
	var tables []string
	for range 2 {
		var err error
		if tables, err = dualwrite.InstallCapture(ctx, db.Pool, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(tables) != `["public"."events" "public"."posts" "public"."users"]` {
		t.Fatalf("captured %v, want events, posts, users", tables)
	}
	var triggers int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshift%'").Scan(&triggers); err != nil || triggers != 6 {
		t.Fatalf("%d pgshift triggers (err %v), want 6 (two per table, once)", triggers, err)
	}
	_, err := db.Pool.Exec(ctx, "TRUNCATE events")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "TRUNCATE of public.events is refused") || !strings.Contains(pgErr.Hint, "allow_truncate") {
		t.Fatalf("TRUNCATE: err %v, want pgshift's refusal with a hint", err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL pgshift.allow_truncate = on"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "TRUNCATE events"); err != nil {
		t.Fatalf("TRUNCATE with allow_truncate on: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := dualwrite.Uninstall(ctx, db.Pool); err != nil {
			t.Fatal(err)
		}
	}
	var left int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgshift%')
		+ (SELECT count(*) FROM pg_namespace WHERE nspname = 'pgshift')
		+ (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgshift')`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d pgshift objects left after Uninstall (err %v)", left, err)
	}
}

// TestTruncateOfEveryPartitionIsRefused: PostgreSQL does not clone TRUNCATE
// triggers to partitions, so InstallCapture puts one on every partition, at
// every level; a partition attached later is reported by
// PartitionsWithoutTruncateTrigger (a cutover gate) until InstallCapture
// runs again.
func TestTruncateOfEveryPartitionIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, func() *pgtest.Server { s, _ := pgtest.Servers(t); return s }(), pgtest.Domain)
	pgtest.Exec(t, db.Pool, `CREATE TABLE m (id int PRIMARY KEY) PARTITION BY RANGE (id);
		CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);
		CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20) PARTITION BY RANGE (id);
		CREATE TABLE m2a PARTITION OF m2 FOR VALUES FROM (10) TO (20);
		INSERT INTO m VALUES (1), (11)`)
	if _, err := dualwrite.InstallCapture(ctx, db.Pool, "", []string{"m"}); err != nil {
		t.Fatal(err)
	}
	refused := func(table string) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, "TRUNCATE "+table)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "is refused") {
			t.Fatalf("TRUNCATE %s: err %v, want pgshift's refusal", table, err)
		}
	}
	for _, table := range []string{"m", "m1", "m2", "m2a"} {
		refused(table)
	}
	missing := func() []string {
		t.Helper()
		rows, err := pgshiftdb.New().PartitionsWithoutTruncateTrigger(ctx, db.Pool)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range rows {
			names = append(names, r.TableName)
		}
		return names
	}
	if got := missing(); len(got) != 0 {
		t.Fatalf("partitions without the trigger after install: %v, want none", got)
	}
	pgtest.Exec(t, db.Pool, `CREATE TABLE m3 PARTITION OF m FOR VALUES FROM (20) TO (30)`)
	if got := missing(); fmt.Sprint(got) != "[m3]" {
		t.Fatalf("partitions without the trigger after attaching m3: %v, want [m3]", got)
	}
	if _, err := dualwrite.InstallCapture(ctx, db.Pool, "", []string{"m"}); err != nil {
		t.Fatal(err)
	}
	refused("m3")
	if got := missing(); len(got) != 0 {
		t.Fatalf("partitions without the trigger after installing again: %v, want none", got)
	}
	if n := count(t, db.Pool, "m", "true"); n != 2 {
		t.Fatalf("m holds %d rows, want its 2", n)
	}
}

// TestCaptureAndTouchWritersGetNoDeadlock: in live, a capture-mode write
// changes a row and only then takes its lock on new (the facade learns the
// row from the trigger), while a Touch-mode write of the same row holds that
// lock and waits for the row: PostgreSQL breaks the cycle by aborting one of
// them. Nothing of the aborted write has committed, so the facade runs it
// again: neither caller sees the deadlock, and both writes land.
func TestCaptureAndTouchWritersGetNoDeadlock(t *testing.T) {
	t.Parallel()
	pair := pgtest.NewPair(t, pgtest.Domain)
	installCapture(t, pair)
	users, _ := seedDomain(t, pair)
	capture := setupOn(t, pair, flags.StageLive, func(c *dualwrite.Config) { c.Capture = true })
	touch := setupOn(t, pair, flags.StageLive)
	ctx := userCtx("deadlock")
	id := users[0]
	updated := make(chan struct{})
	var first sync.Once
	errs := make(chan error, 2)
	go func() {
		errs <- dualwrite.Exec(ctx, capture.facade, dualwrite.Op{Name: "users.rename_captured"}, func(ctx context.Context, tx *dualwrite.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE users SET name = 'captured' WHERE id = $1`, id); err != nil {
				return err
			}
			if tx.Authoritative() {
				// The first run holds the row until the other write has
				// taken the row's lock and waits for the row.
				var waitErr error
				first.Do(func() {
					close(updated)
					waitErr = waitForLockWait(ctx, pair.New.Pool, "%name = 'touched'%")
				})
				return waitErr
			}
			return nil
		})
	}()
	<-updated
	go func() {
		errs <- dualwrite.Exec(ctx, touch.facade, dualwrite.Op{Name: "users.rename_touched"}, func(ctx context.Context, tx *dualwrite.Tx) error {
			tx.Touch("users", id)
			_, err := tx.Exec(ctx, `UPDATE users SET name = 'touched' WHERE id = $1`, id)
			return err
		})
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("a write failed: %v", err)
		}
	}
	capture.facade.Wait()
	touch.facade.Wait()
	waitDrained(t, touch.facade, 60*time.Second)
	requireEqualSides(t, pair.Old.Pool, pair.New.Pool)
}

// waitForLockWait waits until a session of db runs a statement like query
// and waits for a lock.
func waitForLockWait(ctx context.Context, db *pgxpool.Pool, query string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var waiting bool
		if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE $1)`, query).Scan(&waiting); err != nil {
			return err
		}
		if waiting {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no session ran %q waiting for a lock within a minute", query)
}
