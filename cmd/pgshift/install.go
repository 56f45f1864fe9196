package main

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift/dualwrite"
)

func init() {
	register(&command{
		name:    "install",
		summary: "create pgshift's own tables (schema pgshift) on both databases",
		usage: `Usage: pgshift install [flags]

Creates schema "pgshift" with the repair log the dualwrite facade writes and
the backfill's progress table, on old and on new. It is idempotent: running
it again changes nothing. The application's tables are not touched.

Example:
  pgshift install --old postgres://app@old-db/app --new postgres://app@new-db/app
`,
		run: runInstall,
	})
}

func runInstall(ctx context.Context, e *env, args []string) int {
	c := commands["install"]
	fs := newFlagSet(c, e)
	var com common
	com.bind(fs, e)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	for _, side := range []struct{ name, url string }{{"old", com.old}, {"new", com.new}} {
		pool, err := connect(ctx, side.name, side.url, 1)
		if err != nil {
			return fail(e.stderr, c.name, err)
		}
		err = dualwrite.Install(ctx, pool)
		pool.Close()
		if err != nil {
			return fail(e.stderr, c.name, fmt.Errorf("%s: %w", side.name, err))
		}
		fmt.Fprintf(e.stdout, "%s: schema pgshift installed\n", side.name)
	}
	return exitOK
}
