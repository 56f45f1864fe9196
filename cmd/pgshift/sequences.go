package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/pgshift/pgshift/internal/sequences"
)

func init() {
	register(&command{
		name:    "sync-sequences",
		summary: "move every sequence on new past old's value, before writes move to new",
		usage: `Usage: pgshift sync-sequences [--gap N] [--dry-run] [flags]

For every sequence of the schema on old (serial and identity columns
included), sets the sequence of the same name on new past the highest value
old has handed out and past the highest value its column holds on new, plus
--gap. A sequence is never moved backwards, so running it twice is safe. Run
it before the first cohort reaches live, and again right before writes move
for everyone. With --table, only the sequences owned by a column of the named
tables (serial and identity columns) are moved.

Examples:
  pgshift sync-sequences --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift sync-sequences --dry-run --json
`,
		tables: true,
		run:    runSyncSequences,
	})
}

func runSyncSequences(ctx context.Context, e *env, args []string) int {
	var gap int64
	var dry bool
	com, oldPool, newPool, code, ok := catalogCommand(ctx, e, "sync-sequences", args, func(fs *flag.FlagSet) {
		fs.Int64Var(&gap, "gap", sequences.DefaultGap, "how far past old's highest value new's sequences are set")
		fs.BoolVar(&dry, "dry-run", false, "report what would move, change nothing")
	})
	if !ok {
		return code
	}
	defer oldPool.Close()
	defer newPool.Close()
	c := commands["sync-sequences"]
	if err := schemaOnEitherSide(ctx, oldPool, newPool, com.schema); err != nil {
		return fail(e, c.name, err)
	}
	do := sequences.Sync
	if dry {
		do = sequences.Status
	}
	moved, err := do(ctx, oldPool, newPool, com.schema, sequences.Options{Gap: gap, Tables: com.tables})
	if com.json {
		out := struct {
			DryRun    bool              `json:"dry_run"`
			Sequences []sequences.Moved `json:"sequences"`
			Error     string            `json:"error,omitempty"`
		}{dry, moved, errString(err)}
		if werr := writeJSON(e.stdout, out); werr != nil {
			return fail(e, c.name, werr)
		}
	} else {
		for _, m := range moved {
			verb := "left at"
			switch {
			case m.Moved && dry:
				verb = "would move to"
			case m.Moved:
				verb = "moved to"
			}
			fmt.Fprintf(e.stdout, "%s: old at %d, new %s %d (was %d)\n", m.Sequence, m.Old, verb, m.NewAfter, m.NewBefore)
		}
		if len(moved) == 0 && err == nil {
			if len(com.tables) > 0 {
				fmt.Fprintf(e.stdout, "no column of %s in schema %s on old owns a sequence\n", strings.Join(com.tables, ", "), com.schema)
			} else {
				fmt.Fprintf(e.stdout, "schema %s on old has no sequences\n", com.schema)
			}
		}
	}
	if err != nil {
		return fail(e, c.name, err)
	}
	return exitOK
}
