package main

import (
	"context"
	"flag"

	"github.com/pgshift/pgshift/internal/status"
)

func init() {
	register(&command{
		name:    "status",
		summary: "repair backlog per side, running and finished backfills, row counts per table on both sides",
		usage: `Usage: pgshift status [--exact-count-limit N] [flags]

Shows, for old and new, how many entries wait in the repair log and how old
the oldest is (a growing age means the repair worker is not keeping up or a
side is down), every backfill new knows of (chunks done, leased by a live
worker, rows copied, processes working on it: any machine sees every
worker's progress), and the row count of every table on both sides. Tables
larger than --exact-count-limit rows show the planner's estimate, marked "~".

Examples:
  pgshift status --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift status --table users --json
`,
		tables: true,
		run:    runStatus,
	})
}

func runStatus(ctx context.Context, e *env, args []string) int {
	var limit int64
	com, oldPool, newPool, code, ok := catalogCommand(ctx, e, "status", args, func(fs *flag.FlagSet) {
		fs.Int64Var(&limit, "exact-count-limit", status.DefaultExactCountLimit, "count tables up to this many rows exactly; estimate larger ones (-1: always count)")
	})
	if !ok {
		return code
	}
	defer oldPool.Close()
	defer newPool.Close()
	c := commands["status"]
	rep, err := status.Collect(ctx, oldPool, newPool, com.schema, com.tables, status.Options{ExactCountLimit: limit})
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
	return exitOK
}
