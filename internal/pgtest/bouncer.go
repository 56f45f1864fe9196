package pgtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/pglaunch"
)

// Pooled is how a test connects to its databases: straight to the servers,
// or through PgBouncer in transaction pooling mode, as production servers
// are often reached.
type Pooled int

const (
	// Direct connects to the servers.
	Direct Pooled = iota
	// Bounced connects through a PgBouncer in transaction mode in front of
	// each server (see Pair.Bounced).
	Bounced
)

func (p Pooled) String() string {
	if p == Bounced {
		return "pgbouncer"
	}
	return "direct"
}

// Poolings are both ways of connecting, for tests that run under each.
func Poolings() []Pooled { return []Pooled{Direct, Bounced} }

// Via returns p as the test connects to it with pooling: p itself for
// Direct, p.Bounced(t) for Bounced.
func (p *Pair) Via(t testing.TB, pooling Pooled) *Pair {
	t.Helper()
	if pooling == Bounced {
		return p.Bounced(t)
	}
	return p
}

// Bounced returns the pair's databases as seen through a PgBouncer in
// transaction pooling mode in front of each server (ignore_startup_parameters
// = extra_float_digits,search_path, a common setting), started for the
// calling test and stopped when it ends. Its pools use pgx's
// QueryExecModeCacheDescribe, as pgshift's documentation tells applications
// behind PgBouncer to do (PgBouncer 1.18 does not carry protocol-level
// prepared statements in transaction mode). A machine without pgbouncer
// fails the test with one line saying what to install.
func (p *Pair) Bounced(t testing.TB) *Pair {
	t.Helper()
	return &Pair{Old: p.Old.bounced(t), New: p.New.bounced(t)}
}

func (db *DB) bounced(t testing.TB) *DB {
	t.Helper()
	host, port, err := db.Server.hostPort()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b, err := pglaunch.StartBouncer(ctx, pglaunch.BouncerOptions{Name: "bouncer-" + db.Name, Host: host, Port: port})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	out := &DB{Server: db.Server, Name: db.Name, URL: b.URL(db.Name) + "&default_query_exec_mode=cache_describe"}
	cfg, err := pgxpool.ParseConfig(out.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 40
	if out.Pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		t.Fatalf("pgtest: connect %s through PgBouncer: %v", db.Name, err)
	}
	t.Cleanup(out.Pool.Close)
	return out
}

// hostPort is where the server listens for TCP connections.
func (s *Server) hostPort() (string, int, error) {
	if s.Launched != nil {
		return "127.0.0.1", s.Launched.Port(), nil
	}
	cfg, err := pgconn.ParseConfig(s.AdminURL)
	if err != nil {
		return "", 0, fmt.Errorf("pgtest: %w", err)
	}
	return cfg.Host, int(cfg.Port), nil
}
