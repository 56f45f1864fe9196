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
application dual-writes are newer than what backfill reads.

Each table is split once into chunks of key ranges, kept in new
(pgshift.backfill_chunks). --workers chunks are copied at once, of one
table or several; and any number of pgshift backfill processes, on any
machines, can work on the same tables: they lease chunks from new (FOR
UPDATE SKIP LOCKED) and a chunk whose worker died is taken over when its
lease expires, from the last piece it committed. An interrupted backfill
resumes where it stopped; a finished table is skipped unless --restart.

Tables are copied parents first (new's foreign keys). A row a dual write
deletes while its chunk is in flight is deleted from new again once the
chunk commits. Run "pgshift verify" afterwards to prove both sides equal.
pgshift status shows a running backfill from any machine.

A table without a key (no primary key, no unique index on NOT NULL
columns) has no chunks and no way to skip rows new has: it is refused
(exit 2) unless --copy-whole names it. Such a table is copied whole: in one
transaction on new, new's copy is emptied (TRUNCATE) and every row of one
snapshot of old is copied in, so an interrupted copy leaves new as it was
and a second copy (--restart) replaces the first instead of doubling it.
This is for tables the application does not write during the migration
(the dualwrite facade refuses to write them): rows written after the
snapshot are not copied, and pgshift verify reports them. The copy locks
new's table until it commits, and needs TRUNCATE on it.

Gentle on production: --max-rate caps the rows per second, --piece-target
sizes each committed piece to a duration (about 0.5s keeps every
transaction short), --max-old-active waits while old serves more active
sessions than the limit. No snapshot is held longer than one piece.

Progress goes to stderr: a bar on a terminal, a line every 5 s otherwise,
and with --json one JSON object per line a script can follow.

Examples:
  export PGSHIFT_OLD_URL=postgres://app@old-db/app PGSHIFT_NEW_URL=postgres://app@new-db/app
  pgshift backfill                          # every table of schema public
  pgshift backfill --table users --workers 4
  pgshift backfill --max-rate 20000 --piece-target 500ms --max-old-active 40
  pgshift backfill --schema billing --json  # summary as JSON on stdout
  pgshift backfill --copy-whole 'audit_*'   # keyless audit_* tables copied whole
`,
		tables: true,
		run:    runBackfill,
	})
}

type backfillTableJSON struct {
	tableJSON
	Chunks      int   `json:"chunks"`
	Pieces      int   `json:"pieces"`
	Rows        int64 `json:"rows"`
	Inserted    int64 `json:"inserted"`
	AlreadyDone bool  `json:"already_done"`
	Resumed     bool  `json:"resumed"`
	// CopiedWhole is set for a keyless table (--copy-whole).
	CopiedWhole bool `json:"copied_whole"`
}

func runBackfill(ctx context.Context, e *env, args []string) int {
	c, fs, com := flagsFor("backfill", e)
	workers := fs.Int("workers", 2, "chunks copied at once by this process")
	chunk := fs.Int("chunk-size", backfill.ChunkSizeDefault, "rows per chunk")
	lease := fs.Duration("lease", backfill.LeaseDefault, "how long a chunk stays with a worker that commits nothing before another takes it over")
	maxRate := fs.Float64("max-rate", 0, "at most this many rows per second from this process (0: no limit)")
	pieceTarget := fs.Duration("piece-target", 0, "size each committed piece to take about this long, e.g. 500ms (0: --chunk-size rows)")
	maxActive := fs.Int("max-old-active", 0, "wait while old has more active client sessions than this (0: never wait)")
	restart := fs.Bool("restart", false, "forget earlier progress and copy the tables again (still never overwriting)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	s, err := com.open(ctx, e, *workers*2+2)
	if err != nil {
		return fail(e, c.name, err)
	}
	defer s.close()
	prog := newProgress(e.stderr, c.name, e.terminal, com.json)
	results, err := backfill.Run(ctx, s.old, s.new, s.tables, backfill.Options{
		Workers: *workers, ChunkSize: *chunk, Lease: *lease, Restart: *restart, Progress: prog.chunk, Logger: s.log,
		MaxRate: *maxRate, PieceTarget: *pieceTarget, MaxOldActive: *maxActive,
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
		tables = append(tables, backfillTableJSON{tableJSON: tableJSON{Table: r.Table.Qualified(), Error: errString(r.Err)},
			Chunks: r.Chunks, Pieces: r.Pieces, Rows: r.Rows, Inserted: r.Inserted, AlreadyDone: r.AlreadyDone, Resumed: r.Resumed,
			CopiedWhole: r.Whole})
		switch {
		case r.Err != nil:
			code = exitError
			fmt.Fprintf(e.stderr, "pgshift backfill: %v\n", r.Err)
		case r.AlreadyDone && !com.json:
			fmt.Fprintf(e.stderr, "%s: already backfilled (--restart copies it again)\n", r.Table)
		case r.Whole && !com.json:
			fmt.Fprintf(e.stderr, "%s: no key: copied whole, %d rows of one snapshot of old in place of new's copy\n", r.Table, r.Rows)
		case !com.json:
			fmt.Fprintf(e.stderr, "%s: %d rows read in %d pieces of its %d chunks, %d inserted, %d new already had\n", r.Table, r.Rows, r.Pieces, r.Chunks, r.Inserted, r.Rows-r.Inserted)
		}
	}
	if err != nil {
		code = fail(e, c.name, err)
	}
	if com.json {
		out := map[string]any{"ok": code == exitOK, "tables": tables}
		if err != nil {
			out["error"] = err.Error()
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e, c.name, err)
		}
	}
	return code
}
