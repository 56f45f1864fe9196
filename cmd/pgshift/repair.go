package main

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift/dualwrite"
)

func init() {
	register(&command{
		name:    "repair",
		summary: "drain both repair logs now: copy every logged row to the other side",
		usage: `Usage: pgshift repair [flags]

The dualwrite facade records, on the side that committed a write, every row
whose copy on the other side is not confirmed (pgshift.repair_log). Its
repair worker drains these logs continuously; this command does the same
once, now, without waiting for the grace period, for example after the
application has stopped. Each logged row is copied from the side that logged
it to the other side as it is now (or deleted there when it is gone).
Entries that fail (the other side unreachable, a constraint) stay, postponed;
the worker retries them after a back-off, this command at once.

Exit status 0 when every entry it took was settled, 1 when some failed
(postponed). Entries it could not take (another repairer holds them: the
application's worker, a second pgshift repair) or that were written after it
began are counted and left; they are no failure.

Examples:
  pgshift repair --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift repair --json
`,
		run: runRepair,
	})
}

func runRepair(ctx context.Context, e *env, args []string) int {
	com, oldPool, newPool, code, ok := catalogCommand(ctx, e, "repair", args, nil)
	if !ok {
		return code
	}
	defer oldPool.Close()
	defer newPool.Close()
	c := commands["repair"]
	r, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: oldPool, New: newPool, Logger: com.logger(e)})
	if err != nil {
		return fail(e, c.name, err)
	}
	before, err := r.Backlog(ctx)
	if err != nil {
		return fail(e, c.name, err)
	}
	retried, err := r.RetryPostponed(ctx)
	if err != nil {
		return fail(e, c.name, err)
	}
	rep, err := r.Drain(ctx)
	if err != nil {
		return fail(e, c.name, err)
	}
	after, err := r.Backlog(ctx)
	if err != nil {
		return fail(e, c.name, err)
	}
	code = exitOK
	if rep.Postponed > 0 {
		code = exitDifferences
	}
	if com.json {
		out := struct {
			Before    dualwrite.Backlog `json:"before"`
			Retried   int64             `json:"retried_after_backoff"`
			OldToNew  int               `json:"copied_old_to_new"`
			NewToOld  int               `json:"copied_new_to_old"`
			Postponed int               `json:"postponed"`
			After     dualwrite.Backlog `json:"after"`
		}{before, retried, rep.OldToNew, rep.NewToOld, rep.Postponed, after}
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e, c.name, err)
		}
		return code
	}
	fmt.Fprintf(e.stdout, "repair log before: old %d entries, new %d entries\n", before.Old.Entries, before.New.Entries)
	if retried > 0 {
		fmt.Fprintf(e.stdout, "retried now, though waiting out a back-off after failing: %d entries\n", retried)
	}
	fmt.Fprintf(e.stdout, "copied old -> new: %d rows\ncopied new -> old: %d rows\npostponed (failed): %d\n",
		rep.OldToNew, rep.NewToOld, rep.Postponed)
	fmt.Fprintf(e.stdout, "repair log after: old %d entries, new %d entries\n", after.Old.Entries, after.New.Entries)
	switch {
	case code != exitOK:
		fmt.Fprintln(e.stdout, "entries failed: see pgshift.repair_log.last_error on each side, fix the cause, run again")
	case after.Entries() > 0:
		fmt.Fprintf(e.stdout, "%d entries remain that this run did not take: another repairer holds them, or they were written since it began\n", after.Entries())
	}
	return code
}
