package main

import (
	"context"
	"fmt"

	"github.com/pgshift/pgshift/internal/backfill"
)

func init() {
	register(&command{
		name:    "backfill",
		summary: "copy the rows of old into new, never overwriting a row new has",
		usage: `Usage: pgshift backfill [flags]

Copies every row of the tables from old to new with COPY, in chunks of
primary keys. A row new already has is never overwritten: rows the
application dual-writes are newer than what backfill reads. Progress is
kept in new (pgshift.backfill_progress), so an interrupted backfill
resumes where it stopped; a finished table is skipped unless --restart.

Tables are copied parents first (new's foreign keys). A row a dual write
deletes while its chunk is in flight is deleted from new again once the
chunk commits. Run "pgshift verify" afterwards to prove both sides equal.

Examples:
  export PGSHIFT_OLD_URL=postgres://app@old-db/app PGSHIFT_NEW_URL=postgres://app@new-db/app
  pgshift backfill                          # every table of schema public
  pgshift backfill --table users --table posts --workers 2
  pgshift backfill --schema billing --json  # summary as JSON on stdout
`,
		tables: true,
		run:    runBackfill,
	})
}

type backfillTableJSON struct {
	tableJSON
	Chunks      int   `json:"chunks"`
	Rows        int64 `json:"rows"`
	Inserted    int64 `json:"inserted"`
	AlreadyDone bool  `json:"already_done"`
	Resumed     bool  `json:"resumed"`
}

func runBackfill(ctx context.Context, e *env, args []string) int {
	c := commands["backfill"]
	fs := newFlagSet(c, e)
	var com common
	com.bind(fs, e, c)
	workers := fs.Int("workers", 1, "tables copied at once")
	chunk := fs.Int("chunk-size", 50000, "rows per chunk")
	restart := fs.Bool("restart", false, "forget earlier progress and copy the tables again (still never overwriting)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	s, err := com.open(ctx, e, *workers*2+2)
	if err != nil {
		return fail(e.stderr, c.name, err)
	}
	defer s.close()
	prog := newProgress(e.stderr, e.terminal)
	results, err := backfill.Run(ctx, s.old, s.new, s.tables, backfill.Options{
		Workers: *workers, ChunkSize: *chunk, Restart: *restart, Progress: prog.chunk, Logger: s.log,
	})
	prog.finish()
	code := exitOK
	if s.reportSkipped(e.stderr) {
		code = exitError
	}
	out := s.skippedJSON()
	var tables []backfillTableJSON
	for _, t := range out {
		tables = append(tables, backfillTableJSON{tableJSON: t})
	}
	for _, r := range results {
		if r.Table == nil {
			continue // not started: interrupted
		}
		tables = append(tables, backfillTableJSON{tableJSON: tableJSON{Table: r.Table.String(), Error: errString(r.Err)},
			Chunks: r.Chunks, Rows: r.Rows, Inserted: r.Inserted, AlreadyDone: r.AlreadyDone, Resumed: r.Resumed})
		switch {
		case r.Err != nil:
			code = exitError
			fmt.Fprintf(e.stderr, "pgshift backfill: %v\n", r.Err)
		case r.AlreadyDone && !com.json:
			fmt.Fprintf(e.stderr, "%s: already backfilled (--restart copies it again)\n", r.Table)
		case !com.json:
			fmt.Fprintf(e.stderr, "%s: %d rows read in %d chunks, %d inserted, %d new already had\n", r.Table, r.Rows, r.Chunks, r.Inserted, r.Rows-r.Inserted)
		}
	}
	if err != nil {
		code = fail(e.stderr, c.name, err)
	}
	if com.json {
		if err := writeJSON(e.stdout, map[string]any{"ok": code == exitOK, "tables": tables}); err != nil {
			return fail(e.stderr, c.name, err)
		}
	}
	return code
}
