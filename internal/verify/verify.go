// Package verify proves that tables hold the same rows on the old and the
// new database, and optionally repairs what differs.
//
// # How
//
// By default both sides hash the whole table at the same time: each reads
// it in one sequential pass and adds a 64-bit hash of every row to one sum,
// in any order, with no index walked and nothing sorted; only the sums
// cross the wire. Where both servers are PostgreSQL 14 or later, a row is
// hashed by its column types' own hash functions (hash_record_extended)
// without rendering it as text, which is most of the cost of a pass; the
// columns whose types' hashes are not exact or not the same on every
// server (enums, floats, intervals, domains, unconstrained numeric, text
// under a nondeterministic collation, ...) are hashed as text
// (rowsync.Table.TypedHash). Older servers hash every row's text. Equal tables end there. When the
// sums differ, both sides sum their rows into key-hash buckets (65,536 of
// them), and the buckets whose sums differ are read again: both sides send
// the key and md5 of each row of those buckets, and the rows are diffed by
// key. The price: each side's pass is one query, one snapshot for as long
// as the table takes to read (as long as pg_dump's). Options.Buckets < 0
// walks the key in chunks instead, a short transaction each:
//
// Old walks a table's primary key in chunks and hashes each chunk in the
// same pass (rowsync.NextChunk); new hashes the same key range
// (rowsync.HashRange) while old walks and hashes the next one, so both
// servers work at once and only two hashes per chunk cross the wire. Chunk
// hashes are order-insensitive sums of 64-bit row hashes (see rowsync for
// the collision trade-off), so new hashes its range without sorting it. A
// chunk whose hashes differ is drilled into: both sides send the key and
// md5 of each of its rows in that same range, and the rows are diffed by
// key.
//
// # Guarantees
//
//   - In-flight writes are not reported as drift: every difference is read
//     again on both sides after Options.RecheckDelay, and only the ones that
//     still differ are counted. A row that keeps changing under constant
//     writes can still be reported; run verify again, or when the writes
//     stop.
//   - Counts are exact and oriented old -> new: Missing rows are on old but
//     not on new, Extra rows on new but not on old, Different rows on both
//     with other values. Examples holds up to Options.Examples keys of each.
//   - With Options.Repair, the differing keys are entered in the repair log
//     of Options.Source; verify copies no row. A dualwrite.Repairer's Drain
//     repairs them (`pgshift verify --repair` drains and verifies again),
//     under the rows' locks, as every other repair.
//
// # Changed rows only
//
// With Options.Changed a table is compared only at the rows dual writes
// changed since its last full verify: the keys of the dual-write history
// (pgshift.changed_rows, where the facade and the repair worker keep the
// rows of every repair-log entry they settle) and of the entries still in
// the repair logs, on both sides. Both sides read those rows by key, so the
// work is proportional to the rows written, not to the table. It needs a
// full verify that found the table equal (after a repair: the verify after
// the drain) to start from, and no backfill of the table running or
// finished since, and it sees only what went through the facade's dual
// writes: a write that reached one side only (a cohort in off or complete,
// a write outside the facade) is found by a
// full verify alone. A full verify that finds a table equal forgets the
// table's history from before it began. Timestamps of the history come from
// each server's clock and are compared with the full verify's start with
// ClockSkew to spare.
//
// # Keyless tables
//
// A keyless table (rowsync.Table.Keyless, loaded with
// rowsync.LoadTableOrKeyless) is compared as a multiset of rows, since no
// key pairs a row of old with one of new: the whole-table sums first, as
// above (they add up one hash per row, so duplicates count); when they
// differ, bucket sums with rows bucketed by their own hash, then both
// sides count the rows of the differing buckets per distinct row, sorted,
// and the two streams are merged as they arrive, in constant memory. A row
// held k more times on old than on new is k rows missing on new; a changed
// row is one missing and one extra; nothing is Different. Examples are
// whole rows (as text). It is always a full comparison (Options.Changed
// and chunks do not apply), nothing is re-read after RecheckDelay (the
// application does not write such a table during the migration), and
// Options.Repair logs nothing: Result.Fix says to copy the table whole
// again (backfill).
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
)

// The defaults of Options.
const (
	BucketsDefault   = 1 << 16
	ChunkSizeDefault = 10_000
)

// ClockSkew is how far apart the clocks of the client and the two servers
// may be for Options.Changed: rows changed up to this long before the last
// full verify began are compared again.
const ClockSkew = time.Minute

// The kinds of verify recorded in pgshift.verify_runs.
const (
	KindFull    = "full"
	KindChanged = "changed"
)

// Options tune a verification. The zero value compares without repairing.
type Options struct {
	// Buckets is how many key-hash buckets a table's rows are summed in
	// when the whole-table sums differ (a power of two, BucketsDefault
	// when zero); only buckets whose sums differ are read again row by
	// row. A negative value walks the key in chunks instead (see
	// ChunkSize): short transactions, for tables too big for one snapshot.
	Buckets int
	// ChunkSize is the number of rows per chunk when Buckets is negative
	// (ChunkSizeDefault when zero).
	ChunkSize int
	// Workers is how many tables are compared at once (default 1).
	Workers int
	// RecheckDelay is how long to wait before reading a difference again
	// (default 500ms).
	RecheckDelay time.Duration
	// Examples is how many keys of each kind of difference to keep
	// (default 5).
	Examples int
	// Changed compares only the rows dual writes changed since each
	// table's last full verify (see the package documentation). Buckets and
	// ChunkSize do not apply.
	Changed bool
	// Repair enters every difference in the repair log of Source (pgshift's
	// schema must be installed), as an entry to copy from Source to the
	// other side. verify writes no row itself: rows are copied on the one
	// repair path, a dualwrite.Repairer's Drain (or the facade's worker),
	// under the rows' locks from their current values, so a write that
	// lands after verify read a row is never overwritten by verify's stale
	// copy. The table is recorded as repaired, not equal: verify again
	// after the drain to prove it equal.
	Repair bool
	// Source is the side Repair copies from: "old" (default) or "new".
	Source string
	// Logger receives one line per table (default slog.Default()).
	Logger *slog.Logger
	// Progress, when set, is called as rows are compared: after each
	// table's pass, each chunk (Buckets < 0) or each batch of changed keys
	// (Changed). Calls may come from several goroutines at once (Workers).
	Progress func(Progress)
}

// Progress reports rows compared.
type Progress struct {
	Table *rowsync.Table
	// Rows is the number of rows compared since the last call for the
	// table; Estimate the table's rows as old's statistics estimate them
	// (with Options.Changed: the changed keys to compare).
	Rows, Estimate int64
	// Done is set on the table's last call.
	Done bool
}

// Examples are a few keys of each kind of difference.
type Examples struct {
	Missing   [][]string `json:"missing_on_new"`
	Extra     [][]string `json:"extra_on_new"`
	Different [][]string `json:"different"`
}

// Result is the comparison of one table.
type Result struct {
	Table *rowsync.Table
	// Kind is KindFull or KindChanged.
	Kind string
	// Rows is the number of rows on old (with Options.Changed: the number
	// of changed keys compared); Chunks the chunks (or the whole table and
	// its buckets) compared and ChunksDiffering those whose hashes
	// differed.
	Rows                    int64
	Chunks, ChunksDiffering int
	// Missing (on new), Extra (on new) and Different count the rows that
	// still differed when re-checked.
	Missing, Extra, Different int
	// Transient counts differences that were gone when re-checked.
	Transient int
	Examples  Examples
	// Logged counts the differences Options.Repair entered in the repair
	// log of Options.Source, for a repair worker's Drain to repair.
	Logged int
	// Fix, when set, says how to make the table equal where a repair by
	// key cannot: a keyless table that differs is copied whole again.
	Fix string
	Err error
	// NotRecorded says why the result is not in pgshift.verify_runs on new
	// (empty when it is): pgshift is not installed there, or the role may
	// not read or write it. The cutover gates (pgshift preflight) then do
	// not count this verify.
	NotRecorded string
}

// Differences is the number of rows that differ.
func (r Result) Differences() int { return r.Missing + r.Extra + r.Different }

// Run compares tables between old and new. Per-table failures are in the
// results (the other tables continue).
func Run(ctx context.Context, oldDB, newDB *pgxpool.Pool, tables []*rowsync.Table, opts Options) ([]Result, error) {
	if opts.ChunkSize < 1 {
		opts.ChunkSize = ChunkSizeDefault
	}
	if opts.Buckets == 0 {
		opts.Buckets = BucketsDefault
	}
	if opts.Buckets > 0 && opts.Buckets&(opts.Buckets-1) != 0 {
		return nil, fmt.Errorf("verify: %d buckets: want a power of two (or a negative number for chunks)", opts.Buckets)
	}
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	if opts.RecheckDelay == 0 {
		opts.RecheckDelay = 500 * time.Millisecond
	}
	if opts.Examples == 0 {
		opts.Examples = 5
	}
	switch opts.Source {
	case "":
		opts.Source = "old"
	case "old", "new":
	default:
		return nil, fmt.Errorf("verify: source %q: want old or new", opts.Source)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	typed, err := rowsync.TypedHashOnBoth(ctx, oldDB, newDB)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	results := make([]Result, len(tables))
	rowsync.ForEach(ctx, len(tables), opts.Workers, func(i int) {
		t := *tables[i]
		t.TypedHash = typed
		results[i] = table(ctx, oldDB, newDB, &t, opts)
		results[i].Table = tables[i]
	})
	return results, ctx.Err()
}

// chunk is a range of keys and old's Summary of it.
type chunk struct {
	r   rowsync.Range
	old rowsync.Summary
}

func table(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, opts Options) Result {
	res := Result{Table: t, Kind: KindFull}
	start := time.Now()
	prog := &reporter{fn: opts.Progress, t: t}
	if prog.fn != nil && !opts.Changed {
		// best effort: a table without an estimate shows no ETA
		prog.estimate, _ = rowsync.EstimateRows(ctx, oldDB, t)
	}
	defer prog.done()
	var candidates [][]string
	var err error
	switch {
	case t.Keyless():
		err = compareMultisets(ctx, oldDB, newDB, t, opts, &res)
		prog.add(res.Rows)
	case opts.Changed:
		res.Kind = KindChanged
		candidates, err = compareChanged(ctx, oldDB, newDB, t, &res, prog)
	case opts.Buckets > 0:
		candidates, err = compareBuckets(ctx, oldDB, newDB, t, opts.Buckets, &res)
		prog.add(res.Rows)
	default:
		// Chunks are key ranges walked on old and hashed on new: both
		// must sort keys alike.
		var unmatched []string
		if unmatched, err = rowsync.AlignKeyOrder(ctx, newDB, t); err != nil {
			break
		}
		if len(unmatched) > 0 {
			opts.Logger.Warn("verify: the key's collations differ between old and new (or their versions are unknown): chunks compare keys in byte order, which the key index cannot serve",
				"table", t.String(), "columns", unmatched)
		}
		candidates, err = compare(ctx, oldDB, newDB, t, opts.ChunkSize, &res, prog)
	}
	if err != nil {
		res.Err = fmt.Errorf("verify %s: %w", t, err)
		return res
	}
	if t.Keyless() {
		return finish(ctx, oldDB, newDB, t, start, res, opts)
	}
	d, err := recheck(ctx, oldDB, newDB, t, candidates, opts.RecheckDelay)
	if err != nil {
		res.Err = fmt.Errorf("verify %s: re-check: %w", t, err)
		return res
	}
	res.Missing, res.Extra, res.Different = len(d.Missing), len(d.Extra), len(d.Different)
	res.Transient = len(candidates) - d.Len()
	res.Examples = Examples{Missing: first(d.Missing, opts.Examples), Extra: first(d.Extra, opts.Examples), Different: first(d.Different, opts.Examples)}
	if opts.Repair && d.Len() > 0 {
		src := oldDB
		if opts.Source == "new" {
			src = newDB
		}
		n, err := logDifferences(ctx, src, t, d.Keys())
		res.Logged = n
		if err != nil {
			res.Err = fmt.Errorf("verify %s: enter differences in %s's repair log: %w", t, opts.Source, err)
			return res
		}
	}
	return finish(ctx, oldDB, newDB, t, start, res, opts)
}

// finish logs the table's result and records it (record).
func finish(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, start time.Time, res Result, opts Options) Result {
	opts.Logger.Info("table verified", "op", "verify", "kind", res.Kind, "table", t.String(), "rows", res.Rows, "chunks", res.Chunks,
		"missing", res.Missing, "extra", res.Extra, "different", res.Different, "transient", res.Transient,
		"logged", res.Logged, "seconds", time.Since(start).Seconds())
	res.NotRecorded = record(ctx, oldDB, newDB, t, start, res, opts)
	return res
}

// record keeps the table's result in pgshift.verify_runs on new, for the
// cutover gates; a database without pgshift's schema keeps nothing.
func record(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, start time.Time, res Result, opts Options) (notRecorded string) {
	q := pgshiftdb.New()
	ok, err := q.Installed(ctx, newDB)
	if err != nil {
		return fmt.Sprintf("cannot read schema %s on new (%v): give the role USAGE on it and INSERT on %s.verify_runs", pgshiftdb.Schema, err, pgshiftdb.Schema)
	}
	if !ok {
		return fmt.Sprintf("pgshift is not installed on new, or the role may not use schema %s there: run pgshift install, or grant USAGE on it", pgshiftdb.Schema)
	}
	// Differences entered in the repair log are repaired, not equal: the
	// verify after the drain proves them equal.
	equal := res.Differences() == 0
	err = q.RecordVerifyRun(ctx, newDB, pgshiftdb.RecordVerifyRunParams{
		TableSchema: t.Schema, TableName: t.Name, Kind: res.Kind, StartedAt: start, RowsChecked: res.Rows,
		Differences: int64(res.Differences()), Repaired: int64(res.Logged), Equal: equal,
	})
	if err != nil {
		opts.Logger.Warn("verify: could not record the result on new (pgshift preflight will not see it)", "table", t.String(), "err", err)
		return fmt.Sprintf("could not write %s.verify_runs on new (%v): give the role INSERT on it", pgshiftdb.Schema, err)
	}
	if res.Kind != KindFull || !equal {
		return ""
	}
	// Both sides held the same rows when this verify began (ClockSkew
	// earlier, to spare the clocks): the history from before then is
	// compared, and a later verify --changed starts from here.
	for _, db := range []*pgxpool.Pool{oldDB, newDB} {
		if _, err := q.ForgetChangedRows(ctx, db, pgshiftdb.ForgetChangedRowsParams{
			TableSchema: t.Schema, TableName: t.Name, Before: start.Add(-ClockSkew),
		}); err != nil {
			opts.Logger.Warn("verify: could not forget the compared dual-write history (verify --changed will compare more rows)", "table", t.String(), "err", err)
		}
	}
	return ""
}

// compareChanged compares the rows of t that dual writes changed since its
// last full verify, and returns the keys of those that differ.
func compareChanged(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, res *Result, prog *reporter) ([][]string, error) {
	since, err := changedSince(ctx, newDB, t)
	if err != nil {
		return nil, err
	}
	keys, err := changedKeys(ctx, oldDB, newDB, t, since.Add(-ClockSkew))
	if err != nil {
		return nil, err
	}
	res.Rows = int64(len(keys))
	prog.estimate = res.Rows
	var differ [][]string
	for batch := range batches(keys, 1000) {
		prog.add(int64(len(batch)))
		res.Chunks++
		d, err := diff(ctx, oldDB, newDB, t, func(q pgshift.Querier) ([]rowsync.RowHash, error) {
			return rowsync.RowHashesOf(ctx, q, t, batch)
		})
		if err != nil {
			return nil, err
		}
		if d.Len() > 0 {
			res.ChunksDiffering++
			differ = append(differ, d.Keys()...)
		}
	}
	return differ, nil
}

// changedSince is when t's last full verify began, refusing when a changed
// verify cannot stand on it: none recorded, one that left differences, or a
// backfill of t running or finished after it (backfill writes new outside
// the dual-write history).
func changedSince(ctx context.Context, newDB *pgxpool.Pool, t *rowsync.Table) (time.Time, error) {
	q := pgshiftdb.New()
	if ok, err := q.Installed(ctx, newDB); err != nil {
		return time.Time{}, err
	} else if !ok {
		return time.Time{}, fmt.Errorf("--changed needs pgshift's schema on new, where verify runs are recorded: run pgshift install, then a full verify")
	}
	full, err := q.LastFullVerify(ctx, newDB, pgshiftdb.LastFullVerifyParams{TableSchema: t.Schema, TableName: t.Name})
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, fmt.Errorf("--changed: no full verify of %s is recorded to start from: run pgshift verify --table %s (without --changed) first", t, t.Name)
	}
	if err != nil {
		return time.Time{}, err
	}
	if !full.Equal {
		return time.Time{}, fmt.Errorf("--changed: the last full verify of %s (%s) left differences: run pgshift verify --repair --table %s first", t, full.StartedAt.Format(time.RFC3339), t.Name)
	}
	bf, err := q.BackfillFinishedAt(ctx, newDB, pgshiftdb.BackfillFinishedAtParams{TableSchema: t.Schema, TableName: t.Name})
	if err != nil {
		return time.Time{}, err
	}
	if bf.Planned && (!bf.Done || bf.FinishedAt.After(full.StartedAt)) {
		return time.Time{}, fmt.Errorf("--changed: a backfill of %s ran after its last full verify (%s), and backfill writes outside the dual-write history: run a full pgshift verify --table %s", t, full.StartedAt.Format(time.RFC3339), t.Name)
	}
	return full.StartedAt, nil
}

// changedKeys is the union of both sides' changed keys of t since since.
func changedKeys(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, since time.Time) ([][]string, error) {
	var sides [2][][]string
	var g errgroup.Group
	for i, db := range []*pgxpool.Pool{oldDB, newDB} {
		g.Go(func() (err error) {
			sides[i], err = pgshiftdb.New().ChangedKeys(ctx, db, pgshiftdb.ChangedKeysParams{TableSchema: t.Schema, TableName: t.Name, Since: since})
			if err != nil {
				return fmt.Errorf("changed rows on %s: %w", [2]string{"old", "new"}[i], err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return rowsync.UniqueKeys(sides[0], sides[1]), nil
}

// compare walks t on old in chunks, hashing each chunk as it goes
// (rowsync.NextChunk), and has new hash the same range while old already
// walks the next one; it returns the keys of the rows that differ.
func compare(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, size int, res *Result, prog *reporter) ([][]string, error) {
	g, ctx := errgroup.WithContext(ctx)
	chunks := make(chan chunk, 2)
	g.Go(func() error {
		defer close(chunks)
		var after []string
		for {
			r, s, err := rowsync.NextChunk(ctx, oldDB, t, after, size, true)
			if err != nil {
				return err
			}
			select {
			case chunks <- chunk{r: r, old: s}:
			case <-ctx.Done():
				return ctx.Err()
			}
			if r.Last == nil {
				return nil
			}
			after = r.Last
		}
	})
	var keys [][]string
	g.Go(func() error {
		for c := range chunks {
			n, err := rowsync.HashRange(ctx, newDB, t, c.r)
			if err != nil {
				return err
			}
			res.Chunks++
			res.Rows += c.old.Rows
			prog.add(c.old.Rows)
			if c.old == n {
				continue
			}
			res.ChunksDiffering++
			d, err := diff(ctx, oldDB, newDB, t, func(q pgshift.Querier) ([]rowsync.RowHash, error) {
				return rowsync.RowHashes(ctx, q, t, c.r)
			})
			if err != nil {
				return err
			}
			keys = append(keys, d.Keys()...)
		}
		return nil
	})
	return keys, g.Wait()
}

// compareBuckets has both sides hash the whole table at once, one
// sequential pass each; when the sums differ, both sum their rows into
// key-hash buckets, and the buckets whose sums differ are drilled into. It
// returns the keys of the rows that differ.
func compareBuckets(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, buckets int, res *Result) ([][]string, error) {
	differing, err := differingBuckets(ctx, oldDB, newDB, t, buckets, res)
	if err != nil {
		return nil, err
	}
	var keys [][]string
	for len(differing) > 0 {
		batch := differing[:min(len(differing), 4096)]
		differing = differing[len(batch):]
		d, err := diff(ctx, oldDB, newDB, t, func(q pgshift.Querier) ([]rowsync.RowHash, error) {
			return rowsync.RowHashesInBuckets(ctx, q, t, buckets, batch)
		})
		if err != nil {
			return nil, err
		}
		keys = append(keys, d.Keys()...)
	}
	return keys, nil
}

// compareMultisets compares keyless table t as multisets of rows, since no
// key pairs a row on old with one on new: the whole-table sums and, when
// they differ, the bucket sums as for a keyed table (rows bucketed by their
// own hash), then the rows of the differing buckets counted per distinct
// row on both sides and merged (rowsync.DiffMultisets). A row old holds
// more times than new is missing on new, once per copy; fewer, extra; a
// changed row is one of each. Examples are whole rows, a keyless table's
// only identity. Nothing is read again after RecheckDelay (the application
// does not write a keyless table during the migration: the facade refuses
// to), and Repair enters nothing in a repair log, which names rows by key:
// Fix says to copy the table whole again.
func compareMultisets(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, opts Options, res *Result) error {
	buckets := opts.Buckets
	if buckets < 0 { // chunks walk a key
		buckets = BucketsDefault
	}
	differing, err := differingBuckets(ctx, oldDB, newDB, t, buckets, res)
	if err != nil || len(differing) == 0 {
		return err
	}
	d, err := rowsync.DiffMultisets(ctx, oldDB, newDB, t, buckets, differing, opts.Examples)
	if err != nil {
		return err
	}
	res.Missing, res.Extra = int(d.Missing), int(d.Extra)
	for _, ex := range []struct {
		db     *pgxpool.Pool
		hashes []int64
		to     *[][]string
	}{{oldDB, d.MissingHashes, &res.Examples.Missing}, {newDB, d.ExtraHashes, &res.Examples.Extra}} {
		rows, err := rowsync.RowsOfHashes(ctx, ex.db, t, ex.hashes)
		if err != nil {
			return err
		}
		for _, h := range ex.hashes {
			if r, ok := rows[h]; ok {
				*ex.to = append(*ex.to, r)
			}
		}
	}
	schema := ""
	if t.Schema != "public" {
		schema = " --schema " + shellWord(t.Schema)
	}
	res.Fix = fmt.Sprintf("%s has no key, so no row of it can be repaired by key: copy it whole again, replacing new's copy: pgshift backfill --restart%s --table %s --copy-whole %s",
		t, schema, shellWord(t.Name), shellWord(t.Name))
	return nil
}

// shellWord is s as one word of a shell command: quoted unless it holds
// only letters, digits and _.-/ (a pattern's * and ? are quoted too).
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// differingBuckets has both sides hash the whole table at once, one
// sequential pass each, and returns nil when the sums agree (res.Rows set);
// else both sum their rows into buckets, and it returns the buckets whose
// sums differ.
func differingBuckets(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, buckets int, res *Result) ([]int64, error) {
	// The whole table first: one sum per side, no grouping. Equal tables
	// (the common case) end here.
	var whole [2]rowsync.Summary
	var g errgroup.Group
	for i, db := range []*pgxpool.Pool{oldDB, newDB} {
		g.Go(func() (err error) { whole[i], err = rowsync.HashRange(ctx, db, t, rowsync.Range{}); return err })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if whole[0] == whole[1] {
		res.Rows, res.Chunks = whole[0].Rows, 1
		return nil, nil
	}
	var o, n map[int64]rowsync.Summary
	g.Go(func() (err error) { o, err = rowsync.BucketHashes(ctx, oldDB, t, buckets); return err })
	g.Go(func() (err error) { n, err = rowsync.BucketHashes(ctx, newDB, t, buckets); return err })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var differing []int64
	for b, s := range o {
		res.Rows += s.Rows
		if n[b] != s {
			differing = append(differing, b)
		}
	}
	for b := range n {
		if _, ok := o[b]; !ok {
			differing = append(differing, b)
		}
	}
	res.Chunks, res.ChunksDiffering = 1+buckets, 1+len(differing)
	return differing, nil
}

// diff reads rows from both sides at once and diffs them old -> new.
func diff(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, read func(pgshift.Querier) ([]rowsync.RowHash, error)) (rowsync.Diff, error) {
	var o, n []rowsync.RowHash
	var g errgroup.Group
	g.Go(func() (err error) { o, err = read(oldDB); return err })
	g.Go(func() (err error) { n, err = read(newDB); return err })
	if err := g.Wait(); err != nil {
		return rowsync.Diff{}, err
	}
	return rowsync.DiffRows(o, n), nil
}

// recheck reads the candidate keys again on both sides after delay and
// returns the differences that remain.
func recheck(ctx context.Context, oldDB, newDB *pgxpool.Pool, t *rowsync.Table, candidates [][]string, delay time.Duration) (rowsync.Diff, error) {
	var d rowsync.Diff
	if len(candidates) == 0 {
		return d, nil
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return d, ctx.Err()
	}
	for keys := range batches(candidates, 1000) {
		b, err := diff(ctx, oldDB, newDB, t, func(q pgshift.Querier) ([]rowsync.RowHash, error) {
			return rowsync.RowHashesOf(ctx, q, t, keys)
		})
		if err != nil {
			return d, err
		}
		d.Missing, d.Extra, d.Different = append(d.Missing, b.Missing...), append(d.Extra, b.Extra...), append(d.Different, b.Different...)
	}
	return d, nil
}

// batches yields keys in slices of at most n.
func batches(keys [][]string, n int) func(func([][]string) bool) {
	return func(yield func([][]string) bool) {
		for len(keys) > 0 {
			b := keys[:min(n, len(keys))]
			keys = keys[len(b):]
			if !yield(b) {
				return
			}
		}
	}
}

func first(keys [][]string, n int) [][]string { return keys[:min(n, len(keys))] }

// reporter sends one table's Progress to Options.Progress, if set.
type reporter struct {
	fn       func(Progress)
	t        *rowsync.Table
	estimate int64
}

func (r *reporter) add(rows int64) {
	if r.fn != nil && rows > 0 {
		r.fn(Progress{Table: r.t, Rows: rows, Estimate: r.estimate})
	}
}

func (r *reporter) done() {
	if r.fn != nil {
		r.fn(Progress{Table: r.t, Estimate: r.estimate, Done: true})
	}
}

// logDifferences enters keys of t in the repair log on src.
func logDifferences(ctx context.Context, src *pgxpool.Pool, t *rowsync.Table, keys [][]string) (int, error) {
	q := pgshiftdb.New()
	if ok, err := q.Installed(ctx, src); err != nil {
		return 0, err
	} else if !ok {
		return 0, errors.New("pgshift's schema is not installed there: run pgshift install, then verify --repair again")
	}
	total := 0
	for batch := range batches(keys, 1000) {
		js := make([]string, len(batch))
		for i, k := range batch {
			b, err := json.Marshal(k)
			if err != nil {
				return total, err
			}
			js[i] = string(b)
		}
		n, err := q.LogVerifyDifferences(ctx, src, pgshiftdb.LogVerifyDifferencesParams{TableSchema: t.Schema, TableName: t.Name, Keys: js})
		total += int(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
