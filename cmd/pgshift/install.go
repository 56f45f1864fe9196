package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

func init() {
	register(&command{
		name:    "install",
		summary: "create pgshift's own tables on both databases; with --capture, its capture triggers",
		usage: `Usage: pgshift install [--capture [--schema S] [--table T ...]] [flags]

Creates schema "pgshift" with the repair log the dualwrite facade writes and
the backfill's progress table, on old and on new. It is idempotent: running
it again changes nothing.

It refuses (exit 2, naming the owner) a schema "pgshift", or objects in it,
owned by a role that is neither the one it connects as, nor one that role is
a member of, nor the database's owner, nor a superuser, and triggers on
pgshift's tables: another role
created them, and pgshift's writes would run their code. It connects to both
databases and installs in one transaction per side, committed once both
succeeded: either both sides change or neither does.

With --capture it also puts pgshift's capture triggers on the application's
tables (every table of --schema, or those --table names, less those
--exclude-table or --copy-whole match; each needs a key):
in writes of a facade with Config.Capture or Config.Strict they record every
row a statement changes, so write functions need not Touch rows (see the
README: Touch or capture). A captured table refuses TRUNCATE, and so does
each of its partitions; run install --capture again after attaching a
partition (pgshift preflight refuses every move until then). Without
--capture the application's tables are not touched, and --schema and --table
are refused.

Examples:
  pgshift install --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift install --capture --table users --table posts
  pgshift install --json
`,
		tables: true,
		run:    runInstall,
	})
	register(&command{
		name:    "uninstall",
		summary: "remove everything pgshift put in both databases (after the migration)",
		usage: `Usage: pgshift uninstall [--force] [flags]

Removes pgshift's capture triggers from every table and drops schema
"pgshift" (the repair log, the backfill's progress, pgshift's functions) on
old and on new. Run it when the migration is complete or abandoned. It
refuses while a repair log still holds entries (rows that may differ between
the sides: run pgshift repair first), unless --force. It connects to both
databases and checks both repair logs before it removes anything, and
removes in one transaction per side, committed once both succeeded: either
both sides change or neither does (an unreachable side changes nothing). It
is idempotent.

Examples:
  pgshift uninstall --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift uninstall --force --json
`,
		run: runUninstall,
	})
}

// sideJSON is what install and uninstall report per side.
type sideJSON struct {
	Schema    string   `json:"schema"`
	Installed bool     `json:"installed"`
	Captured  []string `json:"captured,omitempty"`
}

func runInstall(ctx context.Context, e *env, args []string) int {
	c, fs, com := flagsFor("install", e)
	capture := fs.Bool("capture", false, "also install the capture triggers on the tables of --schema (or --table)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if !*capture && (len(com.tables) > 0 || com.schema != "public") {
		return fail(e, c.name, errors.New("--schema and --table choose the tables to capture: give --capture too, or leave them out"))
	}
	return eachSide(ctx, e, c, com, func(ctx context.Context, tx pgx.Tx) (sideJSON, error) {
		out := sideJSON{Schema: pgshiftdb.Schema, Installed: true}
		if !*capture {
			return out, dualwrite.Install(ctx, tx)
		}
		tables, err := captureTables(ctx, tx, com)
		if err != nil {
			return out, err
		}
		out.Captured, err = dualwrite.InstallCapture(ctx, tx, com.schema, tables)
		return out, err
	}, func(side string, out sideJSON) string {
		if len(out.Captured) > 0 {
			return fmt.Sprintf("%s: schema %s installed; capturing %v", side, out.Schema, out.Captured)
		}
		return fmt.Sprintf("%s: schema %s installed", side, out.Schema)
	})
}

// captureTables is the tables install --capture covers on one side: those
// --table names, or every table of --schema there, less those
// --exclude-table or --copy-whole match (a table copied whole is one the
// application does not write during the migration).
func captureTables(ctx context.Context, q pgx.Tx, com *common) ([]string, error) {
	if len(com.excludes) == 0 && len(com.copyWhole) == 0 {
		return com.tables, nil // InstallCapture lists the schema's tables
	}
	names := com.tables
	if len(names) == 0 {
		var err error
		if names, err = rowsync.ListTables(ctx, q, com.schema); err != nil {
			return nil, err
		}
	}
	var kept []string
	for _, n := range names {
		if !rowsync.MatchTable(com.excludes, n) && !rowsync.MatchTable(com.copyWhole, n) {
			kept = append(kept, n)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("--exclude-table and --copy-whole leave no table of schema %q to capture", com.schema)
	}
	return kept, nil
}

func runUninstall(ctx context.Context, e *env, args []string) int {
	c, fs, com := flagsFor("uninstall", e)
	force := fs.Bool("force", false, "uninstall even while a repair log holds entries (they are lost)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return eachSide(ctx, e, c, com, func(ctx context.Context, tx pgx.Tx) (sideJSON, error) {
		b, err := dualwrite.ReadBacklog(ctx, tx)
		if err != nil {
			return sideJSON{}, err
		}
		if b.Entries > 0 && !*force {
			return sideJSON{}, fmt.Errorf("the repair log holds %d entries (rows that may differ between the sides): run pgshift repair first, or give --force", b.Entries)
		}
		return sideJSON{Schema: pgshiftdb.Schema}, dualwrite.Uninstall(ctx, tx)
	}, func(side string, out sideJSON) string {
		return fmt.Sprintf("%s: pgshift removed", side)
	})
}

// eachSide changes both databases, all or nothing: it connects to both
// first (an unreachable side changes nothing), runs do on each in a
// transaction of its own, and commits the two only once both succeeded, so
// a refusal or a failure on either side leaves both as they were. Only a
// failure between the two commits (new's commit, after old's) leaves one
// side changed; the error then says so, and --json prints what was done.
// It prints a line per side (say), or with --json one object with both.
func eachSide(ctx context.Context, e *env, c *command, com *common,
	do func(context.Context, pgx.Tx) (sideJSON, error), say func(side string, out sideJSON) string) int {
	var out struct {
		Old   sideJSON `json:"old"`
		New   sideJSON `json:"new"`
		Error string   `json:"error,omitempty"`
	}
	sides := []struct {
		name, url string
		out       *sideJSON
		tx        pgx.Tx
	}{{"old", com.old, &out.Old, nil}, {"new", com.new, &out.New, nil}}
	for i := range sides {
		pool, err := com.connect(ctx, sides[i].name, sides[i].url, 1)
		if err != nil {
			return fail(e, c.name, fmt.Errorf("%w; nothing was changed", err))
		}
		defer pool.Close()
		if sides[i].tx, err = pool.Begin(ctx); err != nil {
			return fail(e, c.name, fmt.Errorf("%s: begin: %w; nothing was changed", sides[i].name, err))
		}
		defer func() { _ = sides[i].tx.Rollback(context.WithoutCancel(ctx)) }()
	}
	for _, side := range sides {
		var err error
		if *side.out, err = do(ctx, side.tx); err != nil {
			return fail(e, c.name, fmt.Errorf("%s: %w; nothing was changed on either side", side.name, err))
		}
	}
	for i, side := range sides {
		if err := side.tx.Commit(ctx); err != nil {
			if i == 0 {
				return fail(e, c.name, fmt.Errorf("%s: commit: %w; nothing was changed on either side", side.name, err))
			}
			// old committed, new did not: say exactly that.
			err = fmt.Errorf("%s: commit: %w; old WAS changed (%s) and new was not: run pgshift %s again", side.name, err, say("old", out.Old), c.name)
			out.New = sideJSON{}
			if com.json {
				out.Error = err.Error()
				_ = writeJSON(e.stdout, out)
			}
			return fail(e, c.name, err)
		}
	}
	if com.json {
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e, c.name, err)
		}
		return exitOK
	}
	for _, side := range sides {
		fmt.Fprintln(e.stdout, say(side.name, *side.out))
	}
	return exitOK
}
