package rowsync

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Connect opens a pool of at most maxConns connections on url with
// SessionParams, so that values read for copying and hashing have the same
// text form on both sides, and checks that it works. Errors from pgx never
// contain the password.
func Connect(ctx context.Context, url string, maxConns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("bad connection string: %w", err)
	}
	for k, v := range SessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.MaxConns = int32(maxConns)
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
