// Package pgtest gives tests two real PostgreSQL servers, "old" and "new",
// and a fresh database on each per test, so tests run in parallel without
// seeing each other's rows.
//
// A test package starts its servers once, on first use, and stops them when
// its tests end; it must route TestMain through Main:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// PGSHIFT_TEST_OLD_URL and PGSHIFT_TEST_NEW_URL point the tests at existing
// servers instead (the user in them must be allowed to create databases).
// Tests that stop, kill or restart a server ask for servers of their own with
// Dedicated, which always launches local ones.
//
// The old and new servers may run different major versions: the launcher
// takes each side's binaries from PGSHIFT_OLD_BINDIR and PGSHIFT_NEW_BINDIR
// (see pglaunch.BinDirFor; scripts/fetch-postgres fetches them), and
// MajorVersions tells a test which versions it got.
//
// A machine without the server binaries fails the test with one line saying
// what to install or which variables to set; it never skips.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/pglaunch"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/queries"
)

// Environment variables naming existing servers to test against.
const (
	EnvOldURL = "PGSHIFT_TEST_OLD_URL"
	EnvNewURL = "PGSHIFT_TEST_NEW_URL"
)

// Server is one side's server: launched by this package, or existing.
type Server struct {
	// Launched is nil for an existing server named by an environment variable.
	Launched *pglaunch.Server
	// AdminURL connects to a database that always exists on the server.
	AdminURL string
}

// URL is the connection string of database db on the server.
func (s *Server) URL(db string) string {
	if s.Launched != nil {
		return s.Launched.URL(db)
	}
	return replaceDatabase(s.AdminURL, db)
}

// MajorVersion is the server's PostgreSQL major version (13, ..., 18); it
// fails the test when the server does not answer.
func (s *Server) MajorVersion(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.AdminURL)
	if err != nil {
		t.Fatalf("pgtest: server version: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var num int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		t.Fatalf("pgtest: server version: %v", err)
	}
	return num / 10000
}

// replaceDatabase returns connection string conn with its database set to db.
func replaceDatabase(conn, db string) string {
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + db
		return u.String()
	}
	// keyword=value form: a later keyword overrides an earlier one.
	return conn + " dbname='" + strings.ReplaceAll(db, "'", `\'`) + "'"
}

var (
	sharedOnce sync.Once
	sharedOld  *Server
	sharedNew  *Server
	sharedErr  error
	dbCounter  atomic.Int64
)

// Main runs the package's tests and stops the shared servers afterwards.
func Main(m *testing.M) { MainExporting(m, "", "") }

// MainExporting is Main for packages whose runnable examples connect the way
// an application does, through environment variables: before the tests run
// it creates a fresh database with the reference domain on each shared
// server and exports their connection strings as oldVar and newVar.
func MainExporting(m *testing.M, oldVar, newVar string) {
	var cleanups []func()
	if oldVar != "" {
		if err := sharedServers(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, v := range []struct {
			name string
			s    *Server
		}{{oldVar, sharedOld}, {newVar, sharedNew}} {
			db, cleanup, err := createDB(v.s, Domain)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			db.Pool.Close()
			cleanups = append(cleanups, cleanup)
			if err := os.Setenv(v.name, db.URL); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	code := m.Run()
	for _, c := range cleanups {
		c()
	}
	for _, s := range []*Server{sharedOld, sharedNew} {
		if s != nil && s.Launched != nil {
			_ = s.Launched.Close()
		}
	}
	os.Exit(code)
}

// Servers returns the package's shared old and new servers, starting them on
// first use. Tests must not stop them; see Dedicated.
func Servers(t testing.TB) (oldServer, newServer *Server) {
	t.Helper()
	if err := sharedServers(); err != nil {
		t.Fatal(err)
	}
	return sharedOld, sharedNew
}

func sharedServers() error {
	sharedOnce.Do(func() {
		oldURL, newURL := os.Getenv(EnvOldURL), os.Getenv(EnvNewURL)
		switch {
		case oldURL != "" && newURL != "":
			sharedOld, sharedNew = &Server{AdminURL: oldURL}, &Server{AdminURL: newURL}
		case oldURL != "" || newURL != "":
			sharedErr = fmt.Errorf("pgtest: set both %s and %s, or neither to launch local servers", EnvOldURL, EnvNewURL)
		default:
			sharedOld, sharedNew, sharedErr = launchPair(context.Background(), nil)
		}
	})
	return sharedErr
}

// Dedicated launches a pair of servers that belong to the calling test alone,
// for tests that stop, kill or restart them. They are closed when the test
// ends.
func Dedicated(t testing.TB) (oldServer, newServer *Server) {
	t.Helper()
	return DedicatedWith(t, nil)
}

// DedicatedWith is Dedicated with extra server settings (postgres -c
// name=value), which override the launcher's own: fsync=on and
// synchronous_commit=on make servers that keep every commit through a crash.
func DedicatedWith(t testing.TB, settings map[string]string) (oldServer, newServer *Server) {
	t.Helper()
	oldServer, newServer, err := launchPair(context.Background(), settings)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = oldServer.Launched.Close()
		_ = newServer.Launched.Close()
	})
	return oldServer, newServer
}

func launchPair(ctx context.Context, settings map[string]string) (oldServer, newServer *Server, err error) {
	oldDir, err := pglaunch.BinDirFor(pglaunch.Old)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: old server: %w", err)
	}
	newDir, err := pglaunch.BinDirFor(pglaunch.New)
	if err != nil {
		return nil, nil, fmt.Errorf("pgtest: new server: %w", err)
	}
	var wg sync.WaitGroup
	var oldErr, newErr error
	var o, n *pglaunch.Server
	wg.Add(2)
	go func() {
		defer wg.Done()
		o, oldErr = pglaunch.Start(ctx, pglaunch.Options{Name: "old", BinDir: oldDir, Settings: settings})
	}()
	go func() {
		defer wg.Done()
		n, newErr = pglaunch.Start(ctx, pglaunch.Options{Name: "new", BinDir: newDir, Settings: settings})
	}()
	wg.Wait()
	if oldErr != nil || newErr != nil {
		if o != nil {
			_ = o.Close()
		}
		if n != nil {
			_ = n.Close()
		}
		if oldErr != nil {
			return nil, nil, fmt.Errorf("pgtest: %w", oldErr)
		}
		return nil, nil, fmt.Errorf("pgtest: %w", newErr)
	}
	return &Server{Launched: o, AdminURL: o.URL("postgres")}, &Server{Launched: n, AdminURL: n.URL("postgres")}, nil
}

// DB is one fresh database on one server.
type DB struct {
	Server *Server
	Name   string
	URL    string
	Pool   *pgxpool.Pool
}

// Pair is a fresh database on the old server and one on the new server.
type Pair struct {
	Old, New *DB
}

// Schema selects what a fresh database is created with.
type Schema int

const (
	// Empty creates the database with nothing in it.
	Empty Schema = iota
	// Domain applies the reference domain (queries.Schema) and pgshift's own
	// tables (queries.PgshiftSchema).
	Domain
)

// NewPair creates a fresh database on each shared server with the given
// schema. The databases are dropped when the test ends.
func NewPair(t testing.TB, schema Schema) *Pair {
	t.Helper()
	oldServer, newServer := Servers(t)
	return PairOn(t, oldServer, newServer, schema)
}

// PairOn creates a fresh database on each of the given servers.
func PairOn(t testing.TB, oldServer, newServer *Server, schema Schema) *Pair {
	t.Helper()
	return &Pair{Old: NewDB(t, oldServer, schema), New: NewDB(t, newServer, schema)}
}

// NewDB creates a fresh database on server s, dropped when the test ends.
func NewDB(t testing.TB, s *Server, schema Schema) *DB {
	t.Helper()
	db, cleanup, err := createDB(s, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return db
}

// createDB creates a fresh database on s with a pool on it; cleanup closes
// the pool and drops the database.
func createDB(s *Server, schema Schema) (db *DB, cleanup func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := fmt.Sprintf("pgshift_test_%d_%d", os.Getpid(), dbCounter.Add(1))
	if err := adminExec(ctx, s, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, nil, fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	db = &DB{Server: s, Name: name, URL: s.URL(name)}
	cleanup = func() {
		if db.Pool != nil {
			db.Pool.Close()
		}
		if s.Launched != nil && !s.Launched.Running() {
			return // the test stopped it; the directory goes with the server
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = adminExec(ctx, s, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("pgtest: %w", err)
	}
	cfg.MaxConns = 40
	if db.Pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("pgtest: connect %s: %w", name, err)
	}
	if schema == Domain {
		_, err := db.Pool.Exec(ctx, queries.Schema)
		if err == nil {
			err = pgshiftdb.Install(ctx, db.Pool)
		}
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("pgtest: apply schema to %s: %w", name, err)
		}
	}
	return db, cleanup, nil
}

func adminExec(ctx context.Context, s *Server, sql string) error {
	conn, err := pgx.Connect(ctx, s.AdminURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, sql)
	return err
}
