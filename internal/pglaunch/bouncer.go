package pglaunch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoBouncer is returned (wrapped) when the pgbouncer binary cannot be
// found.
var ErrNoBouncer = errors.New("pgbouncer not found")

// BouncerOptions configure a PgBouncer. The zero value is a PgBouncer in
// transaction pooling mode set up as production ones commonly are.
type BouncerOptions struct {
	// Name appears in the temporary directory's name and in errors.
	Name string
	// Host and Port are the server it pools connections to.
	Host string
	Port int
	// PoolMode is "transaction" (the default), "session" or "statement".
	PoolMode string
	// IgnoreStartupParameters are the startup parameters PgBouncer accepts
	// and drops; "extra_float_digits,search_path" (a common setting) when
	// empty. Any other parameter a client sends is refused.
	IgnoreStartupParameters string
	// PoolSize is the number of server connections per database and user;
	// 20 when zero.
	PoolSize int
}

// Bouncer is a running PgBouncer in front of one server, on a free loopback
// port, in a temporary directory of its own. Like a Server it ends with this
// process however it ends. Its methods are safe for concurrent use.
type Bouncer struct {
	name string
	dir  string
	port int

	mu   sync.Mutex
	proc *os.Process
	done chan struct{}
}

// FindBouncer returns the path of pgbouncer: $PGSHIFT_PGBOUNCER, PATH, or
// where Debian and the PostgreSQL packages put it.
func FindBouncer() (string, error) {
	if p := os.Getenv("PGSHIFT_PGBOUNCER"); p != "" {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
		return "", fmt.Errorf("%w at PGSHIFT_PGBOUNCER=%s: point it at the pgbouncer binary, or unset it", ErrNoBouncer, p)
	}
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked in PATH and /usr/sbin): install it (Debian/Ubuntu: apt-get install pgbouncer; scripts/test does) or set PGSHIFT_PGBOUNCER", ErrNoBouncer)
}

// StartBouncer starts a PgBouncer in front of the server at opts.Host and
// opts.Port, with trust authentication for user postgres, and waits until it
// answers. Close stops it and removes its directory.
func StartBouncer(ctx context.Context, opts BouncerOptions) (*Bouncer, error) {
	sweepStale()
	bin, err := FindBouncer()
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "bouncer"
	}
	if opts.PoolMode == "" {
		opts.PoolMode = "transaction"
	}
	if opts.IgnoreStartupParameters == "" {
		opts.IgnoreStartupParameters = "extra_float_digits,search_path"
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 20
	}
	dir, cred, err := newDir(opts.Name)
	if err != nil {
		return nil, fmt.Errorf("pglaunch %s: %w", opts.Name, err)
	}
	b := &Bouncer{name: opts.Name, dir: dir}
	var startErr error
	for attempt := 0; attempt < 5; attempt++ {
		if b.port, startErr = FreePort(); startErr != nil {
			continue
		}
		if startErr = b.start(ctx, bin, cred, opts); startErr == nil {
			return b, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, startErr
}

func (b *Bouncer) logPath() string { return filepath.Join(b.dir, "pgbouncer.log") }

func (b *Bouncer) start(ctx context.Context, bin string, cred *syscall.Credential, opts BouncerOptions) error {
	ini := filepath.Join(b.dir, "pgbouncer.ini")
	users := filepath.Join(b.dir, "userlist.txt")
	conf := strings.Join([]string{
		"[databases]",
		fmt.Sprintf("* = host=%s port=%d", opts.Host, opts.Port),
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		"listen_port = " + strconv.Itoa(b.port),
		"unix_socket_dir = " + b.dir,
		"auth_type = trust",
		"auth_file = " + users,
		"pool_mode = " + opts.PoolMode,
		"ignore_startup_parameters = " + opts.IgnoreStartupParameters,
		"default_pool_size = " + strconv.Itoa(opts.PoolSize),
		"max_client_conn = 2000",
		"server_login_retry = 1",
		"logfile = " + b.logPath(),
		"pidfile = " + filepath.Join(b.dir, "pgbouncer.pid"),
		"admin_users = postgres",
		"",
	}, "\n")
	for path, content := range map[string]string{ini: conf, users: `"postgres" ""` + "\n"} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return fmt.Errorf("pglaunch %s: %w", b.name, err)
		}
		if cred != nil {
			if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
				return fmt.Errorf("pglaunch %s: %w", b.name, err)
			}
		}
	}
	cmd := exec.CommandContext(context.Background(), bin, ini)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	proc, done, err := StartChild(cmd, syscall.SIGTERM)
	if err != nil {
		return fmt.Errorf("pglaunch %s: start pgbouncer: %w", b.name, err)
	}
	if err := waitReady(ctx, b.name, b.URL("postgres"), done, b.logPath()); err != nil {
		_ = proc.Kill()
		<-done
		return err
	}
	b.mu.Lock()
	b.proc, b.done = proc, done
	b.mu.Unlock()
	return nil
}

// Port is the TCP port PgBouncer listens on (127.0.0.1).
func (b *Bouncer) Port() int { return b.port }

// URL is the connection string of database db through PgBouncer, as user
// postgres.
func (b *Bouncer) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", b.port, db)
}

// Close stops PgBouncer at once (closing its connections) and removes its
// directory.
func (b *Bouncer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() { _ = os.RemoveAll(b.dir) }()
	if b.proc == nil {
		return nil
	}
	if err := b.proc.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pglaunch %s: stop: %w", b.name, err)
	}
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.proc.Kill()
		<-b.done
	}
	b.proc, b.done = nil, nil
	return nil
}
