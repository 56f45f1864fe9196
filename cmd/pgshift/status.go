package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	pgshiftq "github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/status"
)

func init() {
	register(&command{
		name:    "status",
		summary: "repair backlog per side, running and finished backfills, the facades' breakers, row counts per table on both sides",
		usage: `Usage: pgshift status [--exact-count-limit N] [flags]

Shows, for old and new, how many entries wait in the repair log and how old
the oldest is (a growing age means the repair worker is not keeping up or a
side is down), every backfill new knows of (chunks done, leased by a live
worker, rows copied, processes working on it: any machine sees every
worker's progress), the application processes whose facades reported
themselves in the last minute with their breakers (a breaker "open" means
that process skips the side and logs its writes for repair), and the row
count of every table on both sides. Tables
larger than --exact-count-limit rows show the planner's estimate, marked "~".

With one side unreachable it shows what the other side holds (the backlog
growing on old while new is down), marks what it cannot know "?" and names
the side and the error; the exit status is then 2.

Examples:
  pgshift status --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift status --table users --json
`,
		tables: true,
		run:    runStatus,
	})
}

func runStatus(ctx context.Context, e *env, args []string) int {
	c, fs, com := flagsFor("status", e)
	var limit int64
	fs.Int64Var(&limit, "exact-count-limit", status.DefaultExactCountLimit, "count tables up to this many rows exactly; estimate larger ones (-1: always count)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	// Each side on its own: with one side down, status still shows what the
	// other holds (old's backlog growing while new is down).
	var pools [2]*pgxpool.Pool
	var errs [2]error
	for i, side := range []struct{ name, url string }{{"old", com.old}, {"new", com.new}} {
		if side.url == "" {
			_, err := com.connect(ctx, side.name, side.url, 2) // says which flag is missing
			return fail(e, c.name, err)
		}
		if pools[i], errs[i] = com.connect(ctx, side.name, side.url, 2); pools[i] != nil {
			defer pools[i].Close()
		}
	}
	var err error
	switch {
	case errs[0] != nil && errs[1] != nil:
		err = errors.Join(errs[0], errs[1])
	case errs[0] == nil && errs[1] == nil:
		err = differentDatabases(ctx, pools[0], pools[1])
	}
	if err == nil {
		err = com.resolveTables(ctx, pools[0], pools[1])
	}
	if err == nil {
		err = tablesOnEitherSide(ctx, pools[0], pools[1], com.schema, com.tables)
	}
	if err != nil {
		return fail(e, c.name, err)
	}
	var dbs [2]pgshiftq.Querier // a nil pool must stay a nil Querier
	for i, p := range pools {
		if p != nil {
			dbs[i] = p
		}
	}
	rep, err := status.Collect(ctx, dbs[0], dbs[1], com.schema, com.tables, status.Options{ExactCountLimit: limit, OldErr: errs[0], NewErr: errs[1]})
	if err != nil {
		return fail(e, c.name, err)
	}
	if com.json {
		err = writeJSON(e.stdout, rep)
	} else {
		err = rep.Write(e.stdout)
	}
	if err != nil {
		return fail(e, c.name, err)
	}
	if len(rep.Unreachable) > 0 {
		// The report says what could not be reached; the exit status says
		// the picture is incomplete.
		fmt.Fprintf(e.stderr, "pgshift status: %s\n", errors.Join(errs[0], errs[1]))
		return exitError
	}
	return exitOK
}
