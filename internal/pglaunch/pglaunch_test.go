package pglaunch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
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
	if os.Getenv("PGLAUNCH_CHILD") != "" {
		return
	}
	cmd, report := startHelper(t, "^TestChildStartsServer$", "1", "DIR")
	dir := report["DIR"]
	pid := postmasterPID(t, dir)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitGone(t, "postmaster", pid)
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

// `go run ./demo` killed: go run dies and leaves the program it built
// running, with no signal. A program that watches its parent (WithParent)
// stops its servers and removes their directories. Here a helper process
// plays go run: it starts the watching program without a parent-death
// signal, as go run does, and is killed with SIGKILL.
func TestServersEndWhenTheParentOfTheirOwnerIsKilled(t *testing.T) {
	t.Parallel()
	if os.Getenv("PGLAUNCH_CHILD") != "" {
		return
	}
	goRun, report := startHelper(t, "^TestChildRunsWatcher$", "gorun", "DIR", "PID")
	dir := report["DIR"]
	var owner int
	if _, err := fmt.Sscan(report["PID"], &owner); err != nil {
		t.Fatalf("owner pid %q: %v", report["PID"], err)
	}
	// Should the watchdog fail, the owner would outlive the test.
	t.Cleanup(func() { _ = syscall.Kill(owner, syscall.SIGKILL) })
	postmaster := postmasterPID(t, dir)

	if err := goRun.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = goRun.Wait()
	waitGone(t, "owner (the watching program)", owner)
	waitGone(t, "postmaster", postmaster)
	// Its directory went too: the owner stopped its server itself (Close),
	// the parent-death signal alone would have left the files.
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("server directory %s left behind: %v", dir, err)
	}
}

// TestChildRunsWatcher is the two helper processes of
// TestServersEndWhenTheParentOfTheirOwnerIsKilled: "gorun" starts "watcher"
// as go run starts a program, "watcher" starts a server and stops it when
// its parent exits.
func TestChildRunsWatcher(t *testing.T) {
	switch os.Getenv("PGLAUNCH_CHILD") {
	case "gorun":
		cmd := exec.Command(os.Args[0], "-test.run=^TestChildRunsWatcher$", "-test.v")
		cmd.Env = append(os.Environ(), "PGLAUNCH_CHILD=watcher")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
	case "watcher":
		ctx, cancel := WithParent(context.Background())
		defer cancel()
		s, err := Start(ctx, Options{Name: "watched"})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fmt.Fprintf(os.Stdout, "DIR=%s\nPID=%d\n", s.Dir(), os.Getpid())
		<-ctx.Done()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if cause := context.Cause(ctx); !errors.Is(cause, ErrParentExited) {
			t.Errorf("context ended by %v, want ErrParentExited", cause)
		}
	}
}

// startHelper runs this test binary's test run as a helper process with
// PGLAUNCH_CHILD=mode and reads the KEY=value lines of keys from its
// stdout. The process is killed when the test ends.
func startHelper(t *testing.T, run, mode string, keys ...string) (*exec.Cmd, map[string]string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v")
	cmd.Env = append(os.Environ(), "PGLAUNCH_CHILD="+mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	report := map[string]string{}
	lines := bufio.NewScanner(stdout)
	for len(report) < len(keys) && lines.Scan() {
		for _, k := range keys {
			if v, ok := strings.CutPrefix(lines.Text(), k+"="); ok {
				report[k] = strings.TrimSpace(v)
			}
		}
	}
	if len(report) < len(keys) {
		_ = cmd.Process.Kill()
		t.Fatalf("helper %s did not report %v (got %v): %v", run, keys, report, lines.Err())
	}
	// The helper's later output is not read: drain it so it never blocks.
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return cmd, report
}

// postmasterPID is the process id of the server living in dir.
func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	pid, ok := pidIn(filepath.Join(dir, "data", "postmaster.pid"))
	if !ok {
		t.Fatalf("no postmaster.pid in %s", dir)
	}
	return pid
}

// waitGone waits until process pid has exited (a zombie counts as exited).
// The bound only turns a process that never ends into a failure.
func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s %d still running a minute later", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
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

// Each side's variable names its own directory; an unset one falls back to
// FindBinDir, a wrong one is an error naming the variable.
func TestBinDirForTakesEachSidesVariable(t *testing.T) {
	// Not parallel: changes the environment.
	machine, err := FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	for _, name := range []string{"initdb", "postgres"} {
		if err := os.Symlink(filepath.Join(machine, name), filepath.Join(other, name)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(EnvOldBinDir, other)
	t.Setenv(EnvNewBinDir, "")
	if got, err := BinDirFor(Old); err != nil || got != other {
		t.Fatalf("BinDirFor(Old) = %q, %v; want %q", got, err, other)
	}
	if got, err := BinDirFor(New); err != nil || got != machine {
		t.Fatalf("BinDirFor(New) = %q, %v; want the machine's %q", got, err, machine)
	}
	t.Setenv(EnvNewBinDir, "/nonexistent/pg18/bin")
	if _, err := BinDirFor(New); !errors.Is(err, ErrNoBinaries) || !strings.Contains(err.Error(), "PGSHIFT_NEW_BINDIR=/nonexistent/pg18/bin") {
		t.Fatalf("err = %v, want ErrNoBinaries naming PGSHIFT_NEW_BINDIR", err)
	}
	if _, err := BinDirFor("middle"); err == nil {
		t.Fatal("BinDirFor(\"middle\") succeeded, want an error")
	}
}
