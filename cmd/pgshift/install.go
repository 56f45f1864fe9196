package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

func init() {
	register(&command{
		name:    "install",
		summary: "create pgshift's own tables on both databases; with --capture, its capture triggers",
		usage: `Usage: pgshift install [--capture [--schema S] [--table T ...]] [flags]

Creates schema "pgshift" with the repair log the dualwrite facade writes and
the backfill's progress table, on old and on new. It is idempotent: running
it again changes nothing.

With --capture it also puts pgshift's capture triggers on the application's
tables (every table of --schema with a primary key, or those --table names):
in writes of a facade with Config.Capture or Config.Strict they record every
row a statement changes, so write functions need not Touch rows (see the
README: Touch or capture). A captured table refuses TRUNCATE. Without
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
the sides: run pgshift repair first), unless --force. It is idempotent.

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
	return eachSide(ctx, e, c, com, func(ctx context.Context, pool *pgxpool.Pool) (sideJSON, error) {
		out := sideJSON{Schema: pgshiftdb.Schema, Installed: true}
		if !*capture {
			return out, dualwrite.Install(ctx, pool)
		}
		var err error
		out.Captured, err = dualwrite.InstallCapture(ctx, pool, com.schema, com.tables)
		return out, err
	}, func(side string, out sideJSON) string {
		if len(out.Captured) > 0 {
			return fmt.Sprintf("%s: schema %s installed; capturing %v", side, out.Schema, out.Captured)
		}
		return fmt.Sprintf("%s: schema %s installed", side, out.Schema)
	})
}

func runUninstall(ctx context.Context, e *env, args []string) int {
	c, fs, com := flagsFor("uninstall", e)
	force := fs.Bool("force", false, "uninstall even while a repair log holds entries (they are lost)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	return eachSide(ctx, e, c, com, func(ctx context.Context, pool *pgxpool.Pool) (sideJSON, error) {
		b, err := dualwrite.ReadBacklog(ctx, pool)
		if err != nil {
			return sideJSON{}, err
		}
		if b.Entries > 0 && !*force {
			return sideJSON{}, fmt.Errorf("the repair log holds %d entries (rows that may differ between the sides): run pgshift repair first, or give --force", b.Entries)
		}
		return sideJSON{Schema: pgshiftdb.Schema}, dualwrite.Uninstall(ctx, pool)
	}, func(side string, out sideJSON) string {
		return fmt.Sprintf("%s: pgshift removed", side)
	})
}

// eachSide runs do on old, then on new, and prints what it did: a line per
// side (say), or with --json one object with both.
func eachSide(ctx context.Context, e *env, c *command, com *common,
	do func(context.Context, *pgxpool.Pool) (sideJSON, error), say func(side string, out sideJSON) string) int {
	var out struct {
		Old sideJSON `json:"old"`
		New sideJSON `json:"new"`
	}
	for _, side := range []struct {
		name, url string
		out       *sideJSON
	}{{"old", com.old, &out.Old}, {"new", com.new, &out.New}} {
		pool, err := com.connect(ctx, side.name, side.url, 1)
		if err != nil {
			return fail(e, c.name, err)
		}
		*side.out, err = do(ctx, pool)
		pool.Close()
		if err != nil {
			return fail(e, c.name, fmt.Errorf("%s: %w", side.name, err))
		}
		if !com.json {
			fmt.Fprintln(e.stdout, say(side.name, *side.out))
		}
	}
	if com.json {
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e, c.name, err)
		}
	}
	return exitOK
}
