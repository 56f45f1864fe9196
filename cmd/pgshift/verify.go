package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/verify"
)

func init() {
	register(&command{
		name:    "verify",
		summary: "prove old and new hold the same rows; --repair makes them so",
		usage: `Usage: pgshift verify [--changed] [--repair [--source old|new]] [flags]

Compares the tables of old and new: both servers hash every table at once,
one sequential pass each, and equal tables end there. When the hashes
differ, both sum their rows into --buckets key-hash buckets and only the
rows of differing buckets are read, key and hash. With --chunks, tables are
walked in key order in chunks of --chunk-size rows instead, a short
transaction each (for tables too big to read under one snapshot). Each
difference is read again after --recheck so writes still in flight are not
reported.
With --changed, only the rows dual writes changed since a table's last full
verify are compared (the facade's dual-write history and the repair logs),
in time proportional to those rows; it needs a full verify that found the
table equal, and no backfill since. Writes that reached one side only (a
cohort in off or complete, writes outside the facade) need a full verify.
Prints per table the rows missing on new, extra on new and different, with
example keys. Progress goes to stderr as backfill's does: a bar on a
terminal, a line every 5 s otherwise, JSON lines with --json.
With --repair, verify copies no row itself: it enters each difference in
the repair log of --source (pgshift install first), drains the logs as
pgshift repair does (under the rows' locks, from their current values, so
a write that lands meanwhile is never overwritten) and verifies the
differing tables again; what it prints is that re-check. Exit status 1
when differences remain (after --repair: in the re-check).
A table without a key is refused (exit 2) unless --copy-whole names it;
then it is compared as a multiset of rows: both sides count each distinct
row, and a row held twice on old and once on new is one row missing on new.
Examples are whole rows. Such a table cannot be repaired row by row:
--repair leaves it as it is and prints the backfill that copies it whole
again.

Examples:
  pgshift verify --old postgres://app@old-db/app --new postgres://app@new-db/app
  pgshift verify --table users --json
  pgshift verify --repair                  # make new equal to old
  pgshift verify --changed                 # only the rows written since the last full verify
  pgshift verify --repair --source new     # make old equal to new (rollback after live)
  pgshift verify --copy-whole audit_log    # keyless audit_log compared as a multiset of rows
`,
		tables: true,
		run:    runVerify,
	})
}

type verifyTableJSON struct {
	tableJSON
	Kind      string          `json:"kind"`
	Rows      int64           `json:"rows"`
	Missing   int             `json:"missing_on_new"`
	Extra     int             `json:"extra_on_new"`
	Different int             `json:"different"`
	Transient int             `json:"transient"`
	Examples  verify.Examples `json:"examples"`
	Logged    int             `json:"repair_logged"`
	// Multiset says the table has no key and was compared as a multiset
	// of rows (--copy-whole); Fix says how to make it equal then.
	Multiset bool   `json:"multiset,omitempty"`
	Fix      string `json:"fix,omitempty"`
	// NotRecorded says why pgshift preflight will not see this result.
	NotRecorded string `json:"not_recorded,omitempty"`
}

func runVerify(ctx context.Context, e *env, args []string) int {
	c, fs, com := flagsFor("verify", e)
	repair := fs.Bool("repair", false, "repair each difference from --source to the other side (through the repair log), then verify again")
	source := fs.String("source", "old", "the side --repair copies from: old or new")
	workers := fs.Int("workers", 1, "tables compared at once")
	buckets := fs.Int("buckets", verify.BucketsDefault, "key-hash buckets to find differences in (a power of two)")
	changed := fs.Bool("changed", false, "compare only the rows dual writes changed since each table's last full verify")
	chunks := fs.Bool("chunks", false, "walk the key in chunks of --chunk-size rows, a short transaction each, instead of one pass per table")
	chunk := fs.Int("chunk-size", verify.ChunkSizeDefault, "rows per chunk with --chunks")
	recheck := fs.Duration("recheck", 500*time.Millisecond, "wait before re-reading a difference")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *source != "old" && *source != "new" {
		return fail(e, c.name, fmt.Errorf("--source %q: want old or new", *source))
	}
	s, err := com.open(ctx, e, *workers*4+2)
	if err != nil {
		return fail(e, c.name, err)
	}
	defer s.close()
	if *changed && *chunks {
		return fail(e, c.name, errors.New("--changed and --chunks: --changed reads rows by key; give one of them"))
	}
	if *chunks {
		*buckets = -1
	}
	prog := newProgress(e.stderr, c.name, e.terminal, com.json)
	results, err := verify.Run(ctx, s.old, s.new, s.tables, verify.Options{
		Buckets: *buckets, ChunkSize: *chunk, Workers: *workers, RecheckDelay: *recheck, Changed: *changed, Repair: *repair, Source: *source,
		Logger: s.log, Progress: prog.compared,
	})
	prog.finish()
	if err == nil && *repair {
		results, err = repairAndRecheck(ctx, e, s, results, verify.Options{
			Buckets: *buckets, ChunkSize: *chunk, Workers: *workers, RecheckDelay: *recheck, Changed: *changed, Logger: s.log,
		})
	}
	code := exitOK
	if s.reportSkipped(e.stderr) {
		code = exitError
	}
	var tables []verifyTableJSON
	for _, t := range s.skippedJSON() {
		tables = append(tables, verifyTableJSON{tableJSON: t})
	}
	differ := false
	for _, r := range results {
		if r.Table == nil {
			continue
		}
		tables = append(tables, verifyTableJSON{tableJSON: tableJSON{Table: r.Table.Qualified(), Error: errString(r.Err)},
			Kind: r.Kind, Rows: r.Rows, Missing: r.Missing, Extra: r.Extra, Different: r.Different, Transient: r.Transient,
			Examples: r.Examples, Logged: r.Logged, NotRecorded: r.NotRecorded, Multiset: r.Table.Keyless(), Fix: r.Fix})
		if r.Err != nil {
			code = exitError
			fmt.Fprintf(e.stderr, "pgshift verify: %v\n", r.Err)
			continue
		}
		if r.Differences() > 0 {
			differ = true
		}
		if !com.json {
			printVerify(e.stdout, r, *repair, *source)
		}
		if r.NotRecorded != "" {
			fmt.Fprintf(e.stderr, "pgshift verify: %s: result not recorded, so pgshift preflight will not count this verify: %s\n", r.Table, r.NotRecorded)
		}
	}
	if err != nil {
		code = fail(e, c.name, err)
	}
	if code == exitOK && differ {
		code = exitDifferences
	}
	if com.json {
		out := map[string]any{"equal": code == exitOK && !hasDifferences(results), "tables": tables}
		if err != nil {
			out["error"] = err.Error()
		}
		if err := writeJSON(e.stdout, out); err != nil {
			return fail(e, c.name, err)
		}
	}
	return code
}

func hasDifferences(results []verify.Result) bool {
	for _, r := range results {
		if r.Differences() > 0 {
			return true
		}
	}
	return false
}

func printVerify(w io.Writer, r verify.Result, repair bool, source string) {
	rows := fmt.Sprintf("%d rows", r.Rows)
	if r.Kind == verify.KindChanged {
		rows = fmt.Sprintf("%d rows changed since the last full verify", r.Rows)
	}
	if r.Differences() == 0 {
		fmt.Fprintf(w, "%s: equal (%s)\n", r.Table, rows)
		return
	}
	if r.Kind == verify.KindFull {
		rows += " on old"
	}
	if r.Table.Keyless() {
		// Rows, not keys: a keyless table's rows are told apart by their
		// values alone, and a row held twice on one side and once on the
		// other is one row missing.
		fmt.Fprintf(w, "%s: %s, no key, compared as multisets of rows; missing on new %d, extra on new %d (a changed row counts once each)\n",
			r.Table, rows, r.Missing, r.Extra)
	} else {
		fmt.Fprintf(w, "%s: %s; missing on new %d, extra on new %d, different %d\n", r.Table, rows, r.Missing, r.Extra, r.Different)
	}
	for _, k := range []struct {
		kind string
		keys [][]string
	}{{"missing on new", r.Examples.Missing}, {"extra on new", r.Examples.Extra}, {"different", r.Examples.Different}} {
		if len(k.keys) > 0 {
			fmt.Fprintf(w, "  %s, e.g. %v\n", k.kind, k.keys)
		}
	}
	if repair && r.Logged > 0 {
		fmt.Fprintf(w, "  %d entered in %s's repair log\n", r.Logged, source)
	}
	if r.Fix != "" {
		fmt.Fprintf(w, "  %s\n", r.Fix)
	}
}

// repairAndRecheck drains the repair logs verify entered the differences
// in (the one repair path: under the rows' locks, from their current
// values) and verifies again the tables that differed. Each table's result
// is the re-check's, with the count of entries verify logged.
func repairAndRecheck(ctx context.Context, e *env, s *session, results []verify.Result, opts verify.Options) ([]verify.Result, error) {
	var again []*rowsync.Table
	var at []int
	for i, r := range results {
		if r.Table != nil && r.Err == nil && r.Logged > 0 {
			again = append(again, r.Table)
			at = append(at, i)
		}
	}
	if len(again) == 0 {
		return results, nil
	}
	rep, err := dualwrite.NewRepairer(dualwrite.RepairerConfig{Old: s.old, New: s.new, Logger: s.log})
	if err != nil {
		return results, err
	}
	drained, err := rep.Drain(ctx)
	if err != nil {
		return results, fmt.Errorf("repair: %w", err)
	}
	if drained.Postponed > 0 {
		fmt.Fprintf(e.stderr, "pgshift verify: repair postponed %d entries: see pgshift.repair_log.last_error, fix the cause, run pgshift repair\n", drained.Postponed)
	}
	rechecked, err := verify.Run(ctx, s.old, s.new, again, opts)
	for j, i := range at {
		if j < len(rechecked) && rechecked[j].Table != nil {
			logged := results[i].Logged
			results[i] = rechecked[j]
			results[i].Logged = logged
		}
	}
	return results, err
}
