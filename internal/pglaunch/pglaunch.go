// Package pglaunch starts throwaway PostgreSQL servers from the server
// binaries installed on the machine, and PgBouncers in front of them, for
// pgshift's tests and its demo.
//
// A server lives in its own temporary directory (data directory, unix socket,
// log) and listens on a free loopback port. Durability is switched off
// (fsync, synchronous_commit, full_page_writes) because nothing it holds
// outlives the run. When the process runs as root the server runs as the
// "postgres" system user, since PostgreSQL refuses to run as root.
//
// However the process ends, the servers end with it: the postmaster is started
// with a parent-death signal (SIGQUIT, PostgreSQL's immediate shutdown), so a
// panicking or killed test binary leaves no server running. The temporary
// directory of a server whose owner died is removed by the next Start. A
// program that is itself started by one that does not pass signals on (`go
// run`) watches its parent with WithParent and stops its servers when the
// parent is gone.
//
// Server binaries are looked up in $PGSHIFT_PG_BINDIR when it is set, else in
// PATH, in the directory `pg_config --bindir` names, and in the versioned
// directories Debian and the PostgreSQL packages use (/usr/lib/postgresql/N/bin,
// /usr/pgsql-N/bin, /usr/local/pgsql/bin), newest version first.
//
// The two sides of a migration may run different major versions: BinDirFor
// takes the old side's directory from $PGSHIFT_OLD_BINDIR and the new side's
// from $PGSHIFT_NEW_BINDIR, each falling back to FindBinDir when unset.
// scripts/fetch-postgres fetches and caches the binaries of every major
// version from 13 to 18 and prints their directories:
//
//	PGSHIFT_OLD_BINDIR=$(scripts/fetch-postgres 13) \
//	PGSHIFT_NEW_BINDIR=$(scripts/fetch-postgres 17) go test ./internal/verify/
package pglaunch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoBinaries is returned (wrapped) when the PostgreSQL server binaries
// cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found")

// dirPrefix names the temporary directories servers live in; Start removes
// the ones whose owning process is gone.
const dirPrefix = "pgshift-pg-"

// searchRoots are the glob patterns of versioned binary directories, tried
// after PATH and pg_config. Tests replace it.
var searchRoots = []string{
	"/usr/lib/postgresql/*/bin",
	"/usr/pgsql-*/bin",
	"/usr/local/pgsql/bin",
	"/opt/homebrew/opt/postgresql@*/bin",
	"/usr/local/opt/postgresql@*/bin",
}

// FindBinDir returns the directory holding initdb and postgres.
func FindBinDir() (string, error) {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		if hasServer(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%w in PGSHIFT_PG_BINDIR=%s: point it at the directory holding initdb and postgres, or unset it", ErrNoBinaries, dir)
	}
	if p, err := exec.LookPath("initdb"); err == nil && hasServer(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	if p, err := exec.LookPath("pg_config"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, p, "--bindir").Output(); err == nil {
			if dir := strings.TrimSpace(string(out)); hasServer(dir) {
				return dir, nil
			}
		}
	}
	var candidates []string
	for _, pattern := range searchRoots {
		matches, _ := filepath.Glob(pattern)
		candidates = append(candidates, matches...)
	}
	// Newest major version first: compare the first number in the path.
	sort.SliceStable(candidates, func(i, j int) bool {
		return versionOf(candidates[i]) > versionOf(candidates[j])
	})
	for _, dir := range candidates {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w (looked in PATH, `pg_config --bindir`, %s): install them (Debian/Ubuntu: apt-get install postgresql) or set PGSHIFT_TEST_OLD_URL and PGSHIFT_TEST_NEW_URL to existing servers",
		ErrNoBinaries, strings.Join(searchRoots, ", "))
}

// Side is one side of a migration, as BinDirFor knows it.
type Side string

// The two sides.
const (
	Old Side = "old"
	New Side = "new"
)

// Environment variables naming the binary directory of one side.
const (
	EnvBinDir    = "PGSHIFT_PG_BINDIR"
	EnvOldBinDir = "PGSHIFT_OLD_BINDIR"
	EnvNewBinDir = "PGSHIFT_NEW_BINDIR"
)

// BinDirFor returns the directory of the server binaries for side: the
// directory $PGSHIFT_OLD_BINDIR (old) or $PGSHIFT_NEW_BINDIR (new) names when
// it is set, else FindBinDir's.
func BinDirFor(side Side) (string, error) {
	env := EnvOldBinDir
	if side == New {
		env = EnvNewBinDir
	} else if side != Old {
		return "", fmt.Errorf("pglaunch: side %q: want %q or %q", side, Old, New)
	}
	dir := os.Getenv(env)
	if dir == "" {
		return FindBinDir()
	}
	if !hasServer(dir) {
		return "", fmt.Errorf("%w in %s=%s: point it at the directory holding initdb and postgres (scripts/fetch-postgres MAJOR prints one), or unset it", ErrNoBinaries, env, dir)
	}
	return dir, nil
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

func versionOf(path string) int {
	digits := strings.FieldsFunc(path, func(r rune) bool { return r < '0' || r > '9' })
	if len(digits) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(digits[0])
	return n
}

// Options configure a server. The zero value is ready to use.
type Options struct {
	// BinDir is the directory of initdb and postgres; FindBinDir when empty.
	BinDir string
	// Name appears in the temporary directory's name and in errors.
	Name string
	// Settings are extra server settings (postgres -c name=value).
	Settings map[string]string
}

// Server is one running (or stopped) PostgreSQL server. Its methods are safe
// for concurrent use.
type Server struct {
	name    string
	binDir  string
	dir     string
	port    int
	cred    *syscall.Credential
	options Options

	mu   sync.Mutex
	proc *os.Process
	done chan struct{} // closed when proc has exited
}

// Start creates a data directory with initdb and starts a server on it.
// Close stops it and removes the directory.
func Start(ctx context.Context, opts Options) (*Server, error) {
	sweepStale()
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	}
	if opts.Name == "" {
		opts.Name = "pg"
	}
	dir, cred, err := newDir(opts.Name)
	if err != nil {
		return nil, fmt.Errorf("pglaunch %s: %w", opts.Name, err)
	}
	s := &Server{name: opts.Name, binDir: binDir, dir: dir, cred: cred, options: opts}
	if err := s.initdb(ctx); err != nil {
		s.removeDir()
		return nil, err
	}
	var startErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, startErr = FreePort(); startErr != nil {
			continue
		}
		if startErr = s.Start(ctx); startErr == nil {
			return s, nil
		}
	}
	s.removeDir()
	return nil, startErr
}

// newDir makes the temporary directory of a process named name, records this
// process as its owner (see sweepStale) and, when running as root, hands it
// to the postgres system user the process will run as (cred, nil otherwise).
func newDir(name string) (dir string, cred *syscall.Credential, err error) {
	if dir, err = os.MkdirTemp("", dirPrefix+name+"-"); err != nil {
		return "", nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if err = os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", nil, err
	}
	if os.Geteuid() == 0 {
		if cred, err = postgresUser(); err != nil {
			return "", nil, err
		}
		if err = os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return "", nil, err
		}
	}
	return dir, cred, nil
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the \"postgres\" system user to run the server (PostgreSQL refuses root): %w; install the postgresql package or run as another user", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "server.log") }

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	return cmd
}

func (s *Server) initdb(ctx context.Context) error {
	cmd := s.command(ctx, "initdb", "-D", s.dataDir(), "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	out, err := cmd.CombinedOutput()
	if errors.Is(err, os.ErrPermission) && s.cred != nil {
		return fmt.Errorf("pglaunch %s: initdb: %w: the postgres system user cannot run the binaries in %s; make the directory and every parent readable by all (chmod a+rX) or keep the binaries outside /root (scripts/fetch-postgres caches them in /var/cache/pgshift when run as root)", s.name, err, s.binDir)
	}
	if err != nil {
		return fmt.Errorf("pglaunch %s: initdb: %w: %s", s.name, err, LastLines(string(out), 5))
	}
	return nil
}

// Start starts a stopped server again on the same port and data directory.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return fmt.Errorf("pglaunch %s: %w", s.name, err)
	}
	defer func() { _ = logFile.Close() }()
	args := []string{"-D", s.dataDir(), "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=300",
		"-c", "shared_buffers=64MB",
		"-c", "max_wal_size=1GB",
		"-c", "log_min_messages=warning",
		"-c", "log_min_error_statement=panic",
		"-c", "timezone=UTC",
	}
	for k, v := range s.options.Settings {
		args = append(args, "-c", k+"="+v)
	}
	cmd := s.command(context.Background(), "postgres", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	proc, done, err := StartChild(cmd, syscall.SIGQUIT)
	if err != nil {
		return fmt.Errorf("pglaunch %s: start postgres: %w", s.name, err)
	}
	s.proc, s.done = proc, done
	if err := s.waitReady(ctx, done); err != nil {
		_ = s.proc.Kill()
		<-done
		s.proc, s.done = nil, nil
		return err
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, done chan struct{}) error {
	return waitReady(ctx, s.name, s.URL("postgres"), done, s.logPath())
}

// waitReady waits until url accepts a connection, the process behind it
// exits (done is closed) or 30 seconds pass; errors quote the end of the
// process's log.
func waitReady(ctx context.Context, name, url string, done chan struct{}, logPath string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgconn.Connect(cctx, url)
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("pglaunch %s: exited during start-up: %s", name, LogTail(logPath))
		case <-ctx.Done():
			return fmt.Errorf("pglaunch %s: waiting for start-up: %w", name, ctx.Err())
		case <-time.After(15 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pglaunch %s: not ready after 30s: %s", name, LogTail(logPath))
		}
	}
}

// Stop shuts the server down cleanly (PostgreSQL's fast shutdown: open
// connections are closed, a checkpoint is written) and waits for it.
func (s *Server) Stop() error { return s.signal(syscall.SIGINT) }

// Kill stops the server abruptly (PostgreSQL's immediate shutdown: no
// checkpoint, crash recovery on the next Start), as a crash would.
func (s *Server) Kill() error { return s.signal(syscall.SIGQUIT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	if err := s.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pglaunch %s: signal %v: %w", s.name, sig, err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.proc.Kill()
		<-s.done
	}
	s.proc, s.done = nil, nil
	return nil
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	err := s.Stop()
	s.removeDir()
	return err
}

func (s *Server) removeDir() { _ = os.RemoveAll(s.dir) }

// MajorVersion is the server's major version (13, 17, ...), as its data
// directory records it.
func (s *Server) MajorVersion() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dataDir(), "PG_VERSION"))
	if err != nil {
		return 0, fmt.Errorf("pglaunch %s: %w", s.name, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pglaunch %s: PG_VERSION: %w", s.name, err)
	}
	return v, nil
}

// Port is the TCP port the server listens on (127.0.0.1).
func (s *Server) Port() int { return s.port }

// Dir is the server's temporary directory.
func (s *Server) Dir() string { return s.dir }

// URL is the connection string of database db as user postgres over TCP.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// sweepStale removes the directories of servers whose owning process is gone
// (a test binary that was killed or panicked: its servers already stopped on
// the parent-death signal, only their files remain).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		owner, ok := pidIn(filepath.Join(dir, "owner.pid"))
		if !ok || owner == os.Getpid() || alive(owner) {
			continue
		}
		// A server or a PgBouncer may still be shutting down; leave it for
		// next time.
		if stillRunning(dir) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// stillRunning reports whether the server or PgBouncer of dir is alive.
func stillRunning(dir string) bool {
	for _, f := range []string{filepath.Join(dir, "data", "postmaster.pid"), filepath.Join(dir, "pgbouncer.pid")} {
		if pid, ok := pidIn(f); ok && alive(pid) {
			return true
		}
	}
	return false
}

// pidIn reads the process id on the first line of file.
func pidIn(file string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid, err == nil
}
