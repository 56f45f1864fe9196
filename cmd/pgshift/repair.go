package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
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
Entries that fail (the other side unreachable, a constraint) stay, postponed.

Exit status 0 when both logs are empty afterwards, 1 when entries remain.

Examples:
  pgshift repair --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift repair --json
`,
		run: runRepair,
	})
}

type backlogJSON struct {
	Entries          int64   `json:"entries"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

func runRepair(ctx context.Context, e *env, args []string) int {
	com, oldPool, newPool, code, ok := catalogCommand(ctx, e, "repair", args, nil)
	if !ok {
		return code
	}
	defer oldPool.Close()
	defer newPool.Close()
	c := commands["repair"]
	level := slog.LevelWarn
	if com.verbose {
		level = slog.LevelInfo
	}
	f, err := dualwrite.New(ctx, dualwrite.Config{
		Old: oldPool, New: newPool,
		Stages: flags.Static(flags.StageOff), // repair follows the logs, not the stages
		Repair: dualwrite.RepairConfig{Disabled: true},
		Logger: slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return fail(e.stderr, c.name, err)
	}
	defer f.Close()
	before, err := f.Backlog(ctx)
	if err != nil {
		return fail(e.stderr, c.name, err)
	}
	rep, err := f.Drain(ctx)
	if err != nil {
		return fail(e.stderr, c.name, err)
	}
	after, err := f.Backlog(ctx)
	if err != nil {
		return fail(e.stderr, c.name, err)
	}
	code = exitOK
	if after[flags.SideOld].Entries+after[flags.SideNew].Entries > 0 {
		code = exitDifferences
	}
	if com.json {
		out := struct {
			Before    map[string]backlogJSON `json:"before"`
			OldToNew  int                    `json:"copied_old_to_new"`
			NewToOld  int                    `json:"copied_new_to_old"`
			Postponed int                    `json:"postponed"`
			After     map[string]backlogJSON `json:"after"`
		}{backlogsJSON(before), rep.Repaired[flags.SideOld], rep.Repaired[flags.SideNew], rep.Failed, backlogsJSON(after)}
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e.stderr, c.name, err)
		}
		return code
	}
	fmt.Fprintf(e.stdout, "repair log before: old %d entries, new %d entries\n", before[flags.SideOld].Entries, before[flags.SideNew].Entries)
	fmt.Fprintf(e.stdout, "copied old -> new: %d rows\ncopied new -> old: %d rows\npostponed (failed): %d\n",
		rep.Repaired[flags.SideOld], rep.Repaired[flags.SideNew], rep.Failed)
	fmt.Fprintf(e.stdout, "repair log after: old %d entries, new %d entries\n", after[flags.SideOld].Entries, after[flags.SideNew].Entries)
	if code != exitOK {
		fmt.Fprintln(e.stdout, "entries remain: see pgshift.repair_log.last_error on each side, fix the cause, run again")
	}
	return code
}

func backlogsJSON(b [2]dualwrite.Backlog) map[string]backlogJSON {
	out := map[string]backlogJSON{}
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		out[side.String()] = backlogJSON{Entries: b[side].Entries, OldestAgeSeconds: b[side].OldestAge.Seconds()}
	}
	return out
}
