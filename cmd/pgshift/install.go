package main

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

func init() {
	register(&command{
		name:    "install",
		summary: "create pgshift's own tables (schema pgshift) on both databases",
		usage: `Usage: pgshift install [flags]

Creates schema "pgshift" with the repair log the dualwrite facade writes and
the backfill's progress table, on old and on new. It is idempotent: running
it again changes nothing. The application's tables are not touched.

Examples:
  pgshift install --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift install --json
`,
		run: runInstall,
	})
}

func runInstall(ctx context.Context, e *env, args []string) int {
	c := commands["install"]
	fs := newFlagSet(c, e)
	var com common
	com.bind(fs, e, c)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	type sideJSON struct {
		Schema    string `json:"schema"`
		Installed bool   `json:"installed"`
	}
	var out struct {
		Old sideJSON `json:"old"`
		New sideJSON `json:"new"`
	}
	for _, side := range []struct {
		name, url string
		out       *sideJSON
	}{{"old", com.old, &out.Old}, {"new", com.new, &out.New}} {
		pool, err := connect(ctx, side.name, side.url, 1)
		if err != nil {
			return fail(e.stderr, c.name, err)
		}
		err = dualwrite.Install(ctx, pool)
		pool.Close()
		if err != nil {
			return fail(e.stderr, c.name, fmt.Errorf("%s: %w", side.name, err))
		}
		*side.out = sideJSON{Schema: pgshiftdb.Schema, Installed: true}
		if !com.json {
			fmt.Fprintf(e.stdout, "%s: schema %s installed\n", side.name, pgshiftdb.Schema)
		}
	}
	if com.json {
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e.stderr, c.name, err)
		}
	}
	return exitOK
}
