package rowsync

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool of at most maxConns connections on url for the row
// engine, and checks that it works. It sends no session parameters at
// start-up (PgBouncer refuses unknown ones): the row engine sets
// SessionParams per transaction itself (InSession, SetSession). Unless url
// names a default_query_exec_mode, statements run in pgx's cache_describe
// mode, which needs no prepared statement to outlive a transaction and so
// works behind PgBouncer in transaction pooling as well as directly. Its
// sessions are named "pgshift" (application_name, which PgBouncer passes
// on) unless url names them. Each of configure, when given, adjusts the
// pool's configuration before it connects (a connect timeout, for one).
// Errors from pgx never contain the password.
func Connect(ctx context.Context, url string, maxConns int, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("bad connection string: %w", err)
	}
	if !strings.Contains(url, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pgshift"
	}
	cfg.MaxConns = int32(maxConns)
	for _, f := range configure {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, err
	}
	return pool, nil
}
