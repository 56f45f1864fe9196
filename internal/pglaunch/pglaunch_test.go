package pglaunch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query(ctx context.Context, t *testing.T, url string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT 40 + 2").Scan(&n); err != nil {
		t.Fatalf("query: %v", err)
	}
	return n
}

func mustStart(t *testing.T) *Server {
	t.Helper()
	s, err := Start(context.Background(), Options{Name: "launchtest"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStopStartKillKeepsData(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := mustStart(t)
	if got := query(ctx, t, s.URL("postgres")); got != 42 {
		t.Fatalf("got %d, want 42", got)
	}
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("Running() after Stop")
	}
	if _, err := pgx.Connect(ctx, s.URL("postgres")); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, s.URL("postgres")); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start after kill (crash recovery): %v", err)
	}
	conn, err = pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("row after stop, kill and restarts: v=%d err=%v, want 7", v, err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	s, err := Start(context.Background(), Options{Name: "closetest"})
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(s.Dir(), "data", "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.SplitN(string(b), "\n", 2)[0], &pid); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory %s still there after Close: %v", s.Dir(), err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("postmaster %d still running after Close", pid)
	}
}

// TestServerDiesWithItsOwner runs a child process that starts a server and
// then is killed with SIGKILL: the server must not outlive it, and the next
// Start must remove the orphaned directory.
func TestServerDiesWithItsOwner(t *testing.T) {
	t.Parallel()
	if os.Getenv("PGLAUNCH_CHILD") == "1" {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildStartsServer$", "-test.v")
	cmd.Env = append(os.Environ(), "PGLAUNCH_CHILD=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir string
	buf := make([]byte, 0, 4096)
	deadline := time.Now().Add(60 * time.Second)
	for dir == "" && time.Now().Before(deadline) {
		chunk := make([]byte, 512)
		n, err := stdout.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if i := strings.Index(string(buf), "DIR="); i >= 0 {
			if j := strings.Index(string(buf[i:]), "\n"); j > 0 {
				dir = strings.TrimSpace(string(buf[i+4 : i+j]))
			}
		}
		if err != nil {
			break
		}
	}
	if dir == "" {
		_ = cmd.Process.Kill()
		t.Fatalf("child did not report its server: %s", buf)
	}
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.SplitN(string(b), "\n", 2)[0], &pid); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for i := 0; ; i++ {
		if syscall.Kill(pid, 0) != nil {
			break
		}
		if i > 300 {
			t.Fatalf("postmaster %d outlived its killed owner", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The next Start sweeps the orphaned directory.
	_ = mustStart(t)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphaned directory %s not removed by the next Start: %v", dir, err)
	}
}

// TestChildStartsServer is the child half of TestServerDiesWithItsOwner.
func TestChildStartsServer(t *testing.T) {
	if os.Getenv("PGLAUNCH_CHILD") != "1" {
		return // only meaningful as the child process
	}
	s, err := Start(context.Background(), Options{Name: "orphan"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = os.Stdout.WriteString("DIR=" + s.Dir() + "\n")
	time.Sleep(time.Minute)
}

func TestFindBinDirMissing(t *testing.T) {
	// Not parallel: changes the environment and searchRoots.
	saved := searchRoots
	t.Cleanup(func() { searchRoots = saved })
	searchRoots = []string{filepath.Join(t.TempDir(), "nothing-*")}
	t.Setenv("PATH", t.TempDir())
	t.Setenv("PGSHIFT_PG_BINDIR", "")
	_, err := FindBinDir()
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "apt-get install postgresql") || !strings.Contains(msg, "PGSHIFT_TEST_OLD_URL") {
		t.Fatalf("error is not one line naming the fix: %q", msg)
	}

	t.Setenv("PGSHIFT_PG_BINDIR", "/nonexistent/bin")
	if _, err := FindBinDir(); !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "PGSHIFT_PG_BINDIR=/nonexistent/bin") {
		t.Fatalf("err = %v, want ErrNoBinaries naming PGSHIFT_PG_BINDIR", err)
	}
}

// A PgBouncer started in front of a server pools in transaction mode,
// answers queries, and is gone after Close.
func TestBouncerPoolsTransactions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Start(ctx, Options{Name: "bounced"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	b, err := StartBouncer(ctx, BouncerOptions{Name: "bouncer", Host: "127.0.0.1", Port: s.Port()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	// SHOW CONFIG is PgBouncer's admin console; a server would not know it.
	admin, err := pgx.Connect(ctx, b.URL("pgbouncer"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	rows, err := admin.Query(ctx, "SHOW CONFIG", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		if vals[0] == "pool_mode" {
			mode, _ = vals[1].(string)
		}
	}
	rows.Close()
	if mode != "transaction" {
		t.Fatalf("pool_mode = %q, want transaction", mode)
	}
	if n := query(ctx, t, b.URL("postgres")); n != 42 {
		t.Fatalf("query through PgBouncer = %d, want 42", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(cctx, b.URL("postgres")); err == nil {
		_ = conn.Close(ctx)
		t.Fatal("PgBouncer still answers after Close")
	}
}
