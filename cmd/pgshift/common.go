package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/schemadiff"
)

// connectTimeoutDefault bounds each connection attempt unless
// --connect-timeout, PGSHIFT_CONNECT_TIMEOUT, PGCONNECT_TIMEOUT or
// connect_timeout in the connection string say otherwise: a host that drops
// packets fails the command instead of hanging it.
const connectTimeoutDefault = 10 * time.Second

// common are the flags every database command takes.
type common struct {
	old, new string
	schema   string
	tables   []string
	// excludes are --exclude-table patterns (path.Match syntax), taken out
	// of the tables worked on (see resolveTables).
	excludes []string
	// copyWhole are --copy-whole patterns: keyless tables they match are
	// copied whole and compared as multisets (see open).
	copyWhole []string
	json      bool
	verbose   bool
	// connectTimeout bounds each connection attempt (0: no bound) unless
	// the connection string names connect_timeout; connectTimeoutErr is a
	// bad value in the environment, reported when the command connects.
	connectTimeout    time.Duration
	connectTimeoutErr error
}

// bind defines the flags command cmd takes: --old, --new, --json and -v
// always, --schema and --table when it works on tables.
// flagsFor is command name's flag set with the common flags bound.
func flagsFor(name string, e *env) (*command, *flag.FlagSet, *common) {
	c := commands[name]
	fs := newFlagSet(c, e)
	com := &common{}
	com.bind(fs, e, c)
	return c, fs, com
}

func (c *common) bind(fs *flag.FlagSet, e *env, cmd *command) {
	fs.StringVar(&c.old, "old", e.getenv("PGSHIFT_OLD_URL"), "connection string of the old database (env PGSHIFT_OLD_URL)")
	fs.StringVar(&c.new, "new", e.getenv("PGSHIFT_NEW_URL"), "connection string of the new database (env PGSHIFT_NEW_URL)")
	c.schema = "public"
	if cmd.tables {
		fs.StringVar(&c.schema, "schema", c.schema, "schema of the tables")
		fs.Func("table", "a table to work on; repeat for more (default: every table of --schema)", func(s string) error {
			c.tables = append(c.tables, s)
			return nil
		})
		fs.Func("exclude-table", "leave out the tables this pattern matches (* and ? as in shell patterns, e.g. audit_*); repeat for more", patterns(&c.excludes))
		fs.Func("copy-whole", "the keyless tables this pattern matches are copied whole (backfill: one snapshot of old, replacing new's copy), compared as multisets of rows (verify) and accepted by the gate into dualwrite; "+
			"only for tables the application does not write during the migration; patterns as --exclude-table's; repeat for more "+
			"(schema-diff, status and sync-sequences accept it and have nothing to do with it, so one set of flags serves every command)", patterns(&c.copyWhole))
	}
	fs.BoolFunc("json", "print a machine-readable summary on stdout (errors too, as {\"command\", \"error\", \"exit_status\"})", func(s string) error {
		v, err := strconv.ParseBool(s)
		c.json, e.json = v, v
		return err
	})
	fs.BoolVar(&c.verbose, "v", false, "log each table's work on stderr")
	c.connectTimeout, c.connectTimeoutErr = connectTimeoutFromEnv(e.getenv)
	fs.DurationVar(&c.connectTimeout, "connect-timeout", c.connectTimeout,
		"give up on a server that does not answer a connection attempt within this, e.g. 5s; 0 waits as long as the OS does (env PGSHIFT_CONNECT_TIMEOUT; connect_timeout in a connection string wins)")
}

// patterns is a flag.Func that adds a table-name pattern (path.Match
// syntax) to list.
func patterns(list *[]string) func(string) error {
	return func(s string) error {
		if _, err := path.Match(s, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", s, err)
		}
		*list = append(*list, s)
		return nil
	}
}

// connectTimeoutFromEnv is --connect-timeout's default: PGSHIFT_CONNECT_TIMEOUT
// (a duration such as 5s, or whole seconds), else libpq's PGCONNECT_TIMEOUT
// (whole seconds), else connectTimeoutDefault.
func connectTimeoutFromEnv(getenv func(string) string) (time.Duration, error) {
	for _, name := range []string{"PGSHIFT_CONNECT_TIMEOUT", "PGCONNECT_TIMEOUT"} {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			return time.Duration(n) * time.Second, nil
		}
		if d, err := time.ParseDuration(v); err == nil && d >= 0 && name == "PGSHIFT_CONNECT_TIMEOUT" {
			return d, nil
		}
		return connectTimeoutDefault, fmt.Errorf("%s=%q: want a duration such as 10s (0 for no bound); fix or unset it", name, v)
	}
	return connectTimeoutDefault, nil
}

// logger logs on stderr: warnings, and each table's work with -v.
func (c *common) logger(e *env) *slog.Logger {
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// session is an open pair of databases and the tables to work on.
type session struct {
	old, new *pgxpool.Pool
	tables   []*rowsync.Table
	// skipped are the tables that cannot be worked on (no primary key,
	// missing), with why.
	skipped []tableError
	log     *slog.Logger
}

type tableError struct {
	table string
	err   error
}

func (s *session) close() {
	if s.old != nil {
		s.old.Close()
	}
	if s.new != nil {
		s.new.Close()
	}
}

// open connects to both databases and loads the tables; a table that
// cannot be loaded is reported in skipped, the others go on.
func (c *common) open(ctx context.Context, e *env, maxConns int) (*session, error) {
	s := &session{log: c.logger(e)}
	var err error
	if s.old, err = c.connect(ctx, "old", c.old, maxConns); err != nil {
		return nil, err
	}
	if s.new, err = c.connect(ctx, "new", c.new, maxConns); err != nil {
		s.close()
		return nil, err
	}
	if err := differentDatabases(ctx, s.old, s.new); err != nil {
		s.close()
		return nil, err
	}
	if err := c.resolveTables(ctx, s.old, s.new); err != nil {
		s.close()
		return nil, err
	}
	names := c.tables
	if len(names) == 0 {
		if names, err = rowsync.ListTables(ctx, s.old, c.schema); err != nil {
			s.close()
			return nil, err
		}
		if len(names) == 0 {
			s.close()
			return nil, fmt.Errorf("schema %q on old has no tables; name the schema with --schema", c.schema)
		}
	}
	for _, n := range names {
		load := rowsync.LoadTable
		if rowsync.MatchTable(c.copyWhole, n) {
			load = rowsync.LoadTableOrKeyless // keyless: copied whole
		}
		t, err := load(ctx, s.old, c.schema, n)
		if err != nil {
			s.skipped = append(s.skipped, tableError{table: c.schema + "." + n, err: err})
			continue
		}
		s.tables = append(s.tables, t)
	}
	return s, nil
}

// connect opens a pool on url with rowsync's session parameters, so that
// values have the same text form on both sides, and checks it works. Every
// connection of the pool, the first and those opened later, is bounded by
// the connect timeout.
func (c *common) connect(ctx context.Context, side, url string, maxConns int) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, fmt.Errorf("no connection string for %s: give --%s or set PGSHIFT_%s_URL", side, side, map[string]string{"old": "OLD", "new": "NEW"}[side])
	}
	if c.connectTimeoutErr != nil {
		return nil, c.connectTimeoutErr
	}
	var timeout time.Duration
	pool, err := rowsync.Connect(ctx, url, maxConns, func(cfg *pgxpool.Config) {
		if !strings.Contains(url, "connect_timeout") {
			cfg.ConnConfig.ConnectTimeout = c.connectTimeout
		}
		timeout = cfg.ConnConfig.ConnectTimeout
	})
	switch {
	case err == nil:
		return pool, nil
	case timeout > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("connect to %s: no answer within %v: check the host and port, and that no firewall drops the packets (--connect-timeout, env PGSHIFT_CONNECT_TIMEOUT, or connect_timeout in the connection string sets the wait): %w", side, timeout, err)
	}
	return nil, fmt.Errorf("connect to %s: %w", side, err)
}

// reportSkipped prints why tables were skipped; it returns whether any were.
func (s *session) reportSkipped(w io.Writer) bool {
	for _, sk := range s.skipped {
		fmt.Fprintf(w, "pgshift: skipped %s: %v\n", sk.table, sk.err)
	}
	return len(s.skipped) > 0
}

// skippedJSON lists the skipped tables for a --json summary.
func (s *session) skippedJSON() []tableJSON {
	var out []tableJSON
	for _, sk := range s.skipped {
		out = append(out, tableJSON{Table: sk.table, Error: sk.err.Error()})
	}
	return out
}

// tableJSON is the part of a table's --json summary every command has.
type tableJSON struct {
	Table string `json:"table"`
	Error string `json:"error,omitempty"`
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fail prints err for command name on stderr and returns the error status;
// a cancelled run says so. With --json, the first error is also what
// runWith prints on stdout when the command printed no summary there.
func fail(e *env, name string, err error) int {
	if errors.Is(err, context.Canceled) {
		err = errors.New("interrupted")
	}
	fmt.Fprintf(e.stderr, "pgshift %s: %v\n", name, err)
	if e.failure == nil {
		e.failure = err
	}
	return exitError
}

// errorJSON is what a command run with --json prints on stdout when it ends
// in an error without a summary.
type errorJSON struct {
	Command    string `json:"command"`
	Error      string `json:"error"`
	ExitStatus int    `json:"exit_status"`
}

// connectBoth opens small pools on old and new, for commands that read the
// catalogs rather than walk tables.
func (c *common) connectBoth(ctx context.Context) (oldPool, newPool *pgxpool.Pool, err error) {
	if oldPool, err = c.connect(ctx, "old", c.old, 2); err != nil {
		return nil, nil, err
	}
	if newPool, err = c.connect(ctx, "new", c.new, 2); err != nil {
		oldPool.Close()
		return nil, nil, err
	}
	if err := differentDatabases(ctx, oldPool, newPool); err != nil {
		oldPool.Close()
		newPool.Close()
		return nil, nil, err
	}
	if err := c.resolveTables(ctx, oldPool, newPool); err != nil {
		oldPool.Close()
		newPool.Close()
		return nil, nil, err
	}
	return oldPool, newPool, nil
}

// resolveTables applies --exclude-table: the tables worked on become those
// named with --table, or every table of the schema on either side, less
// those a pattern matches. Without a pattern it changes nothing.
func (c *common) resolveTables(ctx context.Context, oldPool, newPool *pgxpool.Pool) error {
	if len(c.excludes) == 0 {
		return nil
	}
	names := c.tables
	if len(names) == 0 {
		for _, pool := range []*pgxpool.Pool{oldPool, newPool} {
			if pool == nil {
				continue // unreachable (status)
			}
			side, err := rowsync.ListTables(ctx, pool, c.schema)
			if err != nil {
				return err
			}
			for _, n := range side {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
		}
	}
	var kept []string
	for _, n := range names {
		if !rowsync.MatchTable(c.excludes, n) {
			kept = append(kept, n)
		}
	}
	if len(kept) == 0 {
		return fmt.Errorf("--exclude-table %s leaves no table of schema %q to work on", strings.Join(c.excludes, " --exclude-table "), c.schema)
	}
	c.tables = kept
	return nil
}

// schemaOnEitherSide fails when schema exists on neither side: a mistyped
// --schema, which would otherwise read as two equal databases.
func schemaOnEitherSide(ctx context.Context, oldPool, newPool *pgxpool.Pool, schema string) error {
	for _, pool := range []*pgxpool.Pool{oldPool, newPool} {
		ok, err := schemadiff.SchemaExists(ctx, pool, schema)
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("%w: %q (check --schema)", schemadiff.ErrNoSchema, schema)
}

// catalogCommand is the start of a command that reads both catalogs: it
// parses args with the common flags and those own binds, and connects to
// both databases. When ok is false the command ends with code; otherwise
// the caller closes the pools.
func catalogCommand(ctx context.Context, e *env, name string, args []string, own func(*flag.FlagSet)) (com *common, oldPool, newPool *pgxpool.Pool, code int, ok bool) {
	_, fs, com := flagsFor(name, e)
	if own != nil {
		own(fs)
	}
	if code, ok := parse(fs, args); !ok {
		return nil, nil, nil, code, false
	}
	oldPool, newPool, err := com.connectBoth(ctx)
	if err == nil {
		err = tablesOnEitherSide(ctx, oldPool, newPool, com.schema, com.tables)
	}
	if err != nil {
		if oldPool != nil {
			oldPool.Close()
			newPool.Close()
		}
		return nil, nil, nil, fail(e, name, err), false
	}
	return com, oldPool, newPool, 0, true
}

// tablesOnEitherSide fails when a table named with --table exists on
// neither side: a typo, which would otherwise read as "equal" or "nothing
// to do".
func tablesOnEitherSide(ctx context.Context, oldPool, newPool *pgxpool.Pool, schema string, tables []string) error {
	var missing []string
	for _, t := range tables {
		found := false
		for _, pool := range []*pgxpool.Pool{oldPool, newPool} {
			if pool == nil {
				continue // unreachable (status)
			}
			var ok bool
			err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
				WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2 AND c.relkind IN ('r', 'p'))`, schema, t).Scan(&ok)
			if err != nil {
				return fmt.Errorf("look up table %s.%s: %w", schema, t, err)
			}
			found = found || ok
		}
		if !found {
			missing = append(missing, schema+"."+t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("table %s exists on neither old nor new: check --table and --schema", strings.Join(missing, ", "))
	}
	return nil
}

// errSameDatabase is returned when old and new are one database.
var errSameDatabase = errors.New("old and new are the same database")

// differentDatabases fails when old and new connect to one database (same
// cluster, same database): every comparison would say "equal" and every
// copy would copy a row onto itself. A cluster is told by its system
// identifier where the role may read it (pg_control_system), else by its
// start time, which two clusters share to the microsecond practically
// never.
func differentDatabases(ctx context.Context, oldPool, newPool *pgxpool.Pool) error {
	var ids [2]string
	for i, pool := range []*pgxpool.Pool{oldPool, newPool} {
		err := pool.QueryRow(ctx, `SELECT (SELECT system_identifier::text FROM pg_catalog.pg_control_system())`).Scan(&ids[i])
		if err != nil {
			err = pool.QueryRow(ctx, `SELECT pg_catalog.pg_postmaster_start_time()::text`).Scan(&ids[i])
		}
		if err != nil {
			return fmt.Errorf("identify the %s server: %w", [2]string{"old", "new"}[i], err)
		}
		var db string
		if err := pool.QueryRow(ctx, `SELECT pg_catalog.current_database()::text`).Scan(&db); err != nil {
			return fmt.Errorf("identify the %s database: %w", [2]string{"old", "new"}[i], err)
		}
		ids[i] += "/" + db
	}
	if ids[0] == ids[1] {
		return fmt.Errorf("%w (server %s): point --new (PGSHIFT_NEW_URL) at the database the application moves to", errSameDatabase, ids[0])
	}
	return nil
}
