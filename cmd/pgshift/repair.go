package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

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

A pass takes --batch entries per side at once (2,000; the facade's worker
takes 200, to keep its passes short beside the application's writes): a
large backlog drains faster in bigger passes, which hold more rows' locks
on new at once (BENCHMARKS.md, "Draining the repair log beside backfill").

Examples:
  pgshift repair --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift repair --json
  pgshift repair --batch 200     # passes as small as the facade's worker's
`,
		run: runRepair,
	})
}

// repairBatchDefault is pgshift repair's entries per pass and side: an
// operator's drain of a backlog, ten times the facade worker's batch
// (BenchmarkDrainVsBackfill: 2,000 drained 28% faster than 200, 10,000
// slower than both).
const repairBatchDefault = 2000

func runRepair(ctx context.Context, e *env, args []string) int {
	batch := repairBatchDefault
	com, oldPool, newPool, code, ok := catalogCommand(ctx, e, "repair", args, func(fs *flag.FlagSet) {
		fs.Func("batch", fmt.Sprintf("log entries one pass takes per side (default %d)", repairBatchDefault), func(s string) error {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return fmt.Errorf("%q: want a positive number of entries, e.g. %d", s, repairBatchDefault)
			}
			batch = n
			return nil
		})
	})
	if !ok {
		return code
	}
	defer oldPool.Close()
	defer newPool.Close()
	c := commands["repair"]
	rc := dualwrite.RepairerConfig{Old: oldPool, New: newPool, Logger: com.logger(e)}
	rc.BatchSize = batch
	r, err := dualwrite.NewRepairer(rc)
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
