package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
	"github.com/pgshift/pgshift/internal/pglaunch"
	"github.com/pgshift/pgshift/repo"
)

// databases are the demo's two databases: existing ones named by
// PGSHIFT_OLD_URL and PGSHIFT_NEW_URL, or throwaway servers it launched.
type databases struct {
	old, new *pgxpool.Pool
	urls     [2]string
	servers  []*pglaunch.Server
	// nonDurable says the servers run with fsync off (those the demo
	// launched, or a test's): the gates' durable-commits gate is waived.
	nonDurable bool
}

// openDatabases connects to the databases the environment names, or
// launches two local servers when it names none.
func openDatabases(ctx context.Context, e env, log *slog.Logger) (*databases, error) {
	d := &databases{}
	oldURL, newURL := e.getenv("PGSHIFT_OLD_URL"), e.getenv("PGSHIFT_NEW_URL")
	switch {
	case oldURL != "" && newURL != "":
		d.urls = [2]string{oldURL, newURL}
	case oldURL != "" || newURL != "":
		return nil, fmt.Errorf("set both PGSHIFT_OLD_URL and PGSHIFT_NEW_URL, or neither to launch two local servers")
	default:
		fmt.Fprintln(e.stdout, "pgshift demo: starting two PostgreSQL servers (old, new) ...")
		if err := d.launch(ctx); err != nil {
			return nil, err
		}
		log.Info("launched servers", "old", d.urls[0], "new", d.urls[1])
	}
	var err error
	if d.old, err = openPool(ctx, "old", d.urls[0]); err != nil {
		d.close()
		return nil, err
	}
	if d.new, err = openPool(ctx, "new", d.urls[1]); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *databases) launch(ctx context.Context) error {
	var wg sync.WaitGroup
	servers := make([]*pglaunch.Server, 2)
	errs := make([]error, 2)
	for i, name := range []string{"old", "new"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir, err := pglaunch.BinDirFor(pglaunch.Side(name))
			if err != nil {
				errs[i] = err
				return
			}
			servers[i], errs[i] = pglaunch.Start(ctx, pglaunch.Options{Name: "demo-" + name, BinDir: dir})
		}()
	}
	wg.Wait()
	for i, s := range servers {
		if s != nil {
			d.servers = append(d.servers, s)
			d.urls[i] = s.URL("postgres")
		}
	}
	for _, err := range errs {
		if err != nil {
			d.close()
			return fmt.Errorf("start PostgreSQL: %w (or set PGSHIFT_OLD_URL and PGSHIFT_NEW_URL)", err)
		}
	}
	d.nonDurable = true // pglaunch runs them without fsync
	return nil
}

// gateLimits are the gates' default limits, with the durable-commits gate
// waived on servers the demo launched (they run without fsync, for speed,
// and their data is thrown away); databases the environment names are held
// to it.
func (d *databases) gateLimits() cutover.Limits {
	return cutover.Limits{AllowNonDurable: d.nonDurable}
}

// describe names one side's database without its password.
func (d *databases) describe(side flags.Side) string {
	if len(d.servers) > 0 {
		return where(d.urls[side]) + " (launched)"
	}
	return where(d.urls[side])
}

// prepare applies the schema and pgshift's tables to databases that lack
// them and seeds the accounts when the users table is empty: into both
// sides (bothSides, as if already backfilled) or into old alone (before
// the migration).
func (d *databases) prepare(ctx context.Context, accounts []account, bothSides bool) error {
	for i, pool := range []*pgxpool.Pool{d.old, d.new} {
		var exists bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass('public.users') IS NOT NULL").Scan(&exists); err != nil {
			return fmt.Errorf("%s database: %w", flags.Side(i), err)
		}
		if !exists {
			if err := repo.ApplySchema(ctx, pool); err != nil {
				return fmt.Errorf("%s database: %w", flags.Side(i), err)
			}
		}
		// The demo runs strict: the capture triggers check that every
		// repository method Touches the rows it changes.
		if _, err := dualwrite.InstallCapture(ctx, pool, "public", nil); err != nil {
			return fmt.Errorf("%s database: %w", flags.Side(i), err)
		}
	}
	var users int
	if err := d.old.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&users); err != nil {
		return fmt.Errorf("old database: %w", err)
	}
	if users > 0 {
		return nil
	}
	pools := []*pgxpool.Pool{d.old}
	if bothSides {
		pools = append(pools, d.new)
	}
	return seed(ctx, accounts, 3, pools...)
}

// close closes the pools and stops the servers the demo launched.
func (d *databases) close() {
	if d.old != nil {
		d.old.Close()
	}
	if d.new != nil {
		d.new.Close()
	}
	for _, s := range d.servers {
		_ = s.Close()
	}
}
