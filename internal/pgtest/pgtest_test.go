package pgtest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshift/pgshift/internal/pglaunch"
	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestFreshDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := pgtest.NewPair(t, pgtest.Domain)
	b := pgtest.NewPair(t, pgtest.Empty)
	if a.Old.Name == b.Old.Name || a.Old.Server != b.Old.Server || a.Old.Server == a.New.Server {
		t.Fatalf("pairs share databases or sides share a server: %s %s", a.Old.Name, b.Old.Name)
	}
	if _, err := a.Old.Pool.Exec(ctx, "INSERT INTO users (id, email, name) VALUES (gen_random_uuid(), 'x@example.com', 'x')"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.New.Pool.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil || n != 0 {
		t.Fatalf("new side sees %d users (err %v), want 0", n, err)
	}
	var exists bool
	if err := b.Old.Pool.QueryRow(ctx, "SELECT to_regclass('public.users') IS NOT NULL").Scan(&exists); err != nil || exists {
		t.Fatalf("empty database has users table: %v %v", exists, err)
	}
	if err := a.Old.Pool.QueryRow(ctx, "SELECT to_regclass('pgshift.repair_log') IS NOT NULL").Scan(&exists); err != nil || !exists {
		t.Fatalf("domain database lacks pgshift.repair_log: %v %v", exists, err)
	}
}

func TestExistingServersFromEnvironment(t *testing.T) {
	t.Parallel()
	if os.Getenv("PGTEST_CHILD") == "env" {
		return
	}
	oldServer, newServer := pgtest.Servers(t)
	out, err := runChild(t, "^TestChildUsesEnvironment$",
		"PGTEST_CHILD=env", pgtest.EnvOldURL+"="+oldServer.AdminURL, pgtest.EnvNewURL+"="+newServer.AdminURL)
	if err != nil {
		t.Fatalf("child against existing servers failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "launched=false") {
		t.Fatalf("child launched its own servers instead of using the environment's:\n%s", out)
	}
}

// TestChildUsesEnvironment is the child half of TestExistingServersFromEnvironment.
func TestChildUsesEnvironment(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") != "env" {
		return
	}
	pair := pgtest.NewPair(t, pgtest.Domain)
	t.Logf("launched=%v", pair.Old.Server.Launched != nil || pair.New.Server.Launched != nil)
	if err := pair.New.Pool.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestMissingBinariesFailWithOneLine(t *testing.T) {
	t.Parallel()
	if os.Getenv("PGTEST_CHILD") == "nobin" {
		return
	}
	out, err := runChild(t, "^TestChildNeedsServers$", "PGTEST_CHILD=nobin", "PGSHIFT_PG_BINDIR=/nonexistent/pg/bin",
		pglaunch.EnvOldBinDir+"=", pglaunch.EnvNewBinDir+"=")
	if err == nil {
		t.Fatalf("child passed without server binaries:\n%s", out)
	}
	if strings.Contains(out, "SKIP") {
		t.Fatalf("child skipped instead of failing:\n%s", out)
	}
	var found bool
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "server binaries not found") && strings.Contains(line, "PGSHIFT_PG_BINDIR") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no one-line explanation in the child's output:\n%s", out)
	}
}

// TestChildNeedsServers is the child half of TestMissingBinariesFailWithOneLine.
func TestChildNeedsServers(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") != "nobin" {
		return
	}
	pgtest.NewPair(t, pgtest.Empty)
}

func runChild(t *testing.T, run string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), pgtest.EnvOldURL+"=", pgtest.EnvNewURL+"=")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestProxyBlackholeHoldsAndUpReleases checks the proxy's hung-server mode:
// a query through it waits until the client's own deadline, a new
// connection is accepted (counted) and never answered, and after Up new
// connections work again.
func TestProxyBlackholeHoldsAndUpReleases(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, oldServerOf(t), pgtest.Empty)
	p, conn := proxiedConn(t, db)
	p.Blackhole()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT 1"); !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
		t.Fatalf("query through a blackholed proxy: err %v, want a timeout", err)
	}
	before := p.Attempts()
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if c, err := pgx.ConnectConfig(ctx, proxiedConfig(t, db, p)); err == nil {
		_ = c.Close(context.Background())
		t.Fatal("a connection through a blackholed proxy was answered")
	}
	if got := p.Attempts(); got <= before {
		t.Fatalf("attempts after a connection while blackholed: %d, want more than %d", got, before)
	}
	p.Up()
	c, err := pgx.ConnectConfig(context.Background(), proxiedConfig(t, db, p))
	if err != nil {
		t.Fatalf("connect after Up: %v", err)
	}
	defer func() { _ = c.Close(context.Background()) }()
	if _, err := c.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("query after Up: %v", err)
	}
}

// TestProxyDelayPassesBytes checks that a delayed proxy still passes a
// query and its answer, and holds what goes each way for its direction's
// delay (a round trip takes at least the sum).
func TestProxyDelayPassesBytes(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, oldServerOf(t), pgtest.Empty)
	p, conn := proxiedConn(t, db)
	const d = 20 * time.Millisecond
	for _, delays := range [][2]time.Duration{{d, d}, {d, 0}, {0, d}} {
		p.DelayEach(delays[0], delays[1])
		start := time.Now()
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
			t.Fatalf("query through a delayed proxy: %d, %v", n, err)
		}
		if took, least := time.Since(start), delays[0]+delays[1]; took < least {
			t.Fatalf("delays %v: the round trip took %v, less than their sum", delays, took)
		}
	}
}

func oldServerOf(t testing.TB) *pgtest.Server {
	s, _ := pgtest.Servers(t)
	return s
}

// proxiedConfig is db's connection config with the proxy's address.
func proxiedConfig(t testing.TB, db *pgtest.DB, p *pgtest.Proxy) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(p.Addr())
	n, _ := strconv.Atoi(port)
	cfg.Host, cfg.Port, cfg.Fallbacks = host, uint16(n), nil
	return cfg
}

// targetOf is db's server address, host:port, for a proxy.
func targetOf(t testing.TB, db *pgtest.DB) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// proxiedConn is a proxy in front of db and a connection through it.
func proxiedConn(t *testing.T, db *pgtest.DB) (*pgtest.Proxy, *pgx.Conn) {
	t.Helper()
	p := pgtest.NewProxy(t, targetOf(t, db))
	conn, err := pgx.ConnectConfig(context.Background(), proxiedConfig(t, db, p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return p, conn
}

// Each launched side runs the major version of the binaries its side's
// directory holds (PGSHIFT_OLD_BINDIR, PGSHIFT_NEW_BINDIR, or the machine's
// one), so a cross-version run really tests two versions.
func TestSidesRunTheBinariesOfTheirSide(t *testing.T) {
	t.Parallel()
	oldServer, newServer := pgtest.Servers(t)
	for _, side := range []struct {
		side   pglaunch.Side
		server *pgtest.Server
	}{{pglaunch.Old, oldServer}, {pglaunch.New, newServer}} {
		if side.server.Launched == nil {
			// The server comes from PGSHIFT_TEST_OLD_URL/NEW_URL: it runs
			// whatever binaries its owner runs, and a binary directory set
			// for the side would be ignored without a word.
			env := pglaunch.EnvOldBinDir
			if side.side == pglaunch.New {
				env = pglaunch.EnvNewBinDir
			}
			if dir := os.Getenv(env); dir != "" {
				t.Fatalf("%s is set (%s) but the %s server comes from %s/%s, not from the launcher: unset one of them",
					env, dir, side.side, pgtest.EnvOldURL, pgtest.EnvNewURL)
			}
			continue
		}
		dir, err := pglaunch.BinDirFor(side.side)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
		if err != nil {
			t.Fatalf("%s/postgres --version: %v", dir, err)
		}
		// "postgres (PostgreSQL) 17.10"
		fields := strings.Fields(string(out))
		want, err := strconv.Atoi(strings.SplitN(fields[len(fields)-1], ".", 2)[0])
		if err != nil {
			t.Fatalf("version in %q: %v", out, err)
		}
		if got := side.server.MajorVersion(t); got != want {
			t.Fatalf("%s server runs PostgreSQL %d, want %d from %s", side.side, got, want, dir)
		}
		launched, err := side.server.Launched.MajorVersion()
		if err != nil || launched != want {
			t.Fatalf("%s: pglaunch.Server.MajorVersion = %d, %v; want %d", side.side, launched, err, want)
		}
	}
}
