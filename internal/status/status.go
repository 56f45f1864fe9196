// Package status reports where a migration stands on both databases: the
// repair backlog each side holds in pgshift.repair_log, and how many rows each
// table has on old and on new.
//
// Backlog: the number of entries and the age of the oldest one. A side without
// pgshift.repair_log (pgshift's schema not installed there) reports
// Installed=false and zero entries; that is no error, since a side that never
// took a write through the facade has nothing to repair.
//
// Row counts: count(*) is exact but reads the whole table, which on a large
// table costs minutes and I/O on a production server. So a table whose
// planner estimate (pg_class.reltuples, kept by ANALYZE and autovacuum) is
// above Options.ExactCountLimit (default one million rows) reports that
// estimate, flagged Estimate=true; smaller tables, and tables never analyzed,
// are counted exactly. Each side decides for itself. Counts are for telling
// progress, not for proving equality: that is verify's job.
//
// Example:
//
//	r, err := status.Collect(ctx, oldPool, newPool, "public", nil, status.Options{})
//	if err != nil { ... }
//	r.Write(os.Stdout)
package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgshift/pgshift"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
)

// DefaultExactCountLimit is the estimated row count above which a table's
// rows are estimated rather than counted, unless Options say otherwise.
const DefaultExactCountLimit = 1_000_000

// Options tunes Collect. The zero value is ready to use.
type Options struct {
	// ExactCountLimit: tables estimated above this many rows report the
	// estimate. Zero means DefaultExactCountLimit; negative means always
	// count exactly.
	ExactCountLimit int64
	// OldErr and NewErr say why a side passed to Collect as nil could not
	// be reached (the report shows it); "not connected" when nil.
	OldErr, NewErr error
}

// Count is one table's rows on one side.
type Count struct {
	Rows int64 `json:"rows"`
	// Estimate is true when Rows is the planner's estimate, not count(*).
	Estimate bool `json:"estimate,omitempty"`
	// Missing is true when the side has no such table; Rows is then zero.
	Missing bool `json:"missing,omitempty"`
	// Unknown is true when the side could not be reached.
	Unknown bool `json:"unknown,omitempty"`
}

// TableCount is one table's rows on both sides.
type TableCount struct {
	Table string `json:"table"`
	Old   Count  `json:"old"`
	New   Count  `json:"new"`
}

// Report is the result of Collect.
type Report struct {
	Schema  string            `json:"schema"`
	Backlog pgshiftdb.Backlog `json:"backlog"`
	// Backfills are the tables of any schema with a backfill plan on new,
	// running or finished, as every worker's progress records them.
	Backfills []Backfill   `json:"backfills"`
	Tables    []TableCount `json:"tables"`
	// Facades are the application processes running a dualwrite facade
	// that reported themselves in the last FacadeWindow, with their
	// breakers: a breaker not closed means that process skips that side.
	Facades []Facade `json:"facades"`
	// Unreachable names each side that could not be reached ("old",
	// "new") and why; what the report says of it is unknown.
	Unreachable map[string]string `json:"unreachable,omitempty"`
}

// FacadeWindow is how recent a facade's report must be for status to show
// it: six of its reports (one every 10 s).
const FacadeWindow = time.Minute

// Facade is one facade as it last reported itself (pgshift.facades), on
// whichever side had the latest report.
type Facade struct {
	Instance string `json:"instance"`
	Host     string `json:"host"`
	PID      int32  `json:"pid"`
	// BreakerOld and BreakerNew are "closed", "probing" or "open".
	BreakerOld string `json:"breaker_old"`
	BreakerNew string `json:"breaker_new"`
	// SkippedOld and SkippedNew count the calls that skipped the side
	// because its breaker was open, since the facade started.
	SkippedOld int64 `json:"skipped_old"`
	SkippedNew int64 `json:"skipped_new"`
	// SeenSecondsAgo is the age of the report.
	SeenSecondsAgo float64 `json:"seen_seconds_ago"`
}

// Backfill is one table's backfill: its chunks done, leased by a live
// worker, and in all; the rows copied; the processes working on it now.
type Backfill struct {
	Table   string `json:"table"`
	Done    int64  `json:"chunks_done"`
	Leased  int64  `json:"chunks_leased"`
	Chunks  int64  `json:"chunks"`
	Rows    int64  `json:"rows_copied"`
	Workers int64  `json:"workers"`
}

// Collect reads both sides' repair backlog and the row counts of tables in
// schema ("public" when empty); no tables means every table either side has
// in the schema. pgshift's own schema is refused. A side passed as nil could
// not be reached: the report says so (Options.OldErr, NewErr say why) and
// shows what the other side holds, such as old's backlog growing while new
// is down.
func Collect(ctx context.Context, oldDB, newDB pgshift.Querier, schema string, tables []string, opts Options) (*Report, error) {
	if schema == "" {
		schema = "public"
	}
	if schema == pgshiftdb.Schema {
		return nil, fmt.Errorf("status: schema pgshift holds pgshift's own tables; name the application's schema")
	}
	limit := opts.ExactCountLimit
	if limit == 0 {
		limit = DefaultExactCountLimit
	}
	r := &Report{Schema: schema, Tables: []TableCount{}, Backfills: []Backfill{}, Facades: []Facade{}}
	sides := []struct {
		name string
		db   pgshift.Querier
		err  error
	}{{"old", oldDB, opts.OldErr}, {"new", newDB, opts.NewErr}}
	for _, sd := range sides {
		if sd.db != nil {
			continue
		}
		if r.Unreachable == nil {
			r.Unreachable = map[string]string{}
		}
		r.Unreachable[sd.name] = "not connected"
		if sd.err != nil {
			r.Unreachable[sd.name] = sd.err.Error()
		}
	}
	if len(r.Unreachable) == len(sides) {
		return nil, fmt.Errorf("status: neither side could be reached: old: %s; new: %s", r.Unreachable["old"], r.Unreachable["new"])
	}
	var err error
	if oldDB != nil {
		if r.Backlog.Old, err = pgshiftdb.ReadBacklog(ctx, oldDB); err != nil {
			return nil, fmt.Errorf("status: on old: %w", err)
		}
	}
	if newDB != nil {
		if r.Backlog.New, err = pgshiftdb.ReadBacklog(ctx, newDB); err != nil {
			return nil, fmt.Errorf("status: on new: %w", err)
		}
	}
	if r.Facades, err = facades(ctx, oldDB, newDB); err != nil {
		return nil, err
	}
	if r.Backlog.New.Installed {
		jobs, err := pgshiftdb.New().BackfillJobs(ctx, newDB)
		if err != nil {
			return nil, fmt.Errorf("status: backfills on new: %w", err)
		}
		for _, j := range jobs {
			r.Backfills = append(r.Backfills, Backfill{Table: j.TableSchema + "." + j.TableName, Done: j.Done, Leased: j.Leased,
				Chunks: j.Chunks, Rows: j.RowsCopied, Workers: j.Workers})
		}
	}
	if len(tables) == 0 {
		if tables, err = allTables(ctx, oldDB, newDB, schema); err != nil {
			return nil, err
		}
	}
	for _, t := range tables {
		tc := TableCount{Table: t}
		if tc.Old, err = count(ctx, oldDB, schema, t, limit); err != nil {
			return nil, fmt.Errorf("status: count rows of %s on old: %w", pgx.Identifier{schema, t}.Sanitize(), err)
		}
		if tc.New, err = count(ctx, newDB, schema, t, limit); err != nil {
			return nil, fmt.Errorf("status: count rows of %s on new: %w", pgx.Identifier{schema, t}.Sanitize(), err)
		}
		r.Tables = append(r.Tables, tc)
	}
	return r, nil
}

// facades reads the facades' reports on each reachable side and keeps, per
// facade, the latest: a facade reports on every side it can reach, so one
// that skips new reports on old only.
func facades(ctx context.Context, oldDB, newDB pgshift.Querier) ([]Facade, error) {
	latest := map[string]Facade{}
	for _, sd := range []struct {
		name string
		db   pgshift.Querier
	}{{"old", oldDB}, {"new", newDB}} {
		if sd.db == nil {
			continue
		}
		rows, err := pgshiftdb.New().RecentFacades(ctx, sd.db, FacadeWindow.Seconds())
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") {
			continue // not installed, or by a pgshift from before pgshift.facades
		}
		if err != nil {
			return nil, fmt.Errorf("status: facades on %s: %w", sd.name, err)
		}
		for _, f := range rows {
			if l, ok := latest[f.Instance]; ok && l.SeenSecondsAgo <= f.SeenSecondsAgo {
				continue
			}
			latest[f.Instance] = Facade{Instance: f.Instance, Host: f.Host, PID: f.Pid, BreakerOld: f.BreakerOld, BreakerNew: f.BreakerNew,
				SkippedOld: f.SkippedOld, SkippedNew: f.SkippedNew, SeenSecondsAgo: f.SeenSecondsAgo}
		}
	}
	out := make([]Facade, 0, len(latest))
	for _, f := range latest {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Facade) int { return strings.Compare(a.Instance, b.Instance) })
	return out, nil
}

const tablesSQL = `
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`

// allTables is the sorted union of both sides' tables in schema.
func allTables(ctx context.Context, oldDB, newDB pgshift.Querier, schema string) ([]string, error) {
	var all []string
	for _, side := range []struct {
		name string
		q    pgshift.Querier
	}{{"old", oldDB}, {"new", newDB}} {
		if side.q == nil {
			continue // unreachable
		}
		rows, err := side.q.Query(ctx, tablesSQL, schema)
		if err != nil {
			return nil, fmt.Errorf("status: list tables of schema %s on %s: %w", schema, side.name, err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("status: list tables of schema %s on %s: %w", schema, side.name, err)
		}
		all = append(all, names...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

func count(ctx context.Context, q pgshift.Querier, schema, table string, limit int64) (Count, error) {
	if q == nil {
		return Count{Unknown: true}, nil
	}
	var estimate *int64
	err := q.QueryRow(ctx, `
SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schema, table).Scan(&estimate)
	if errors.Is(err, pgx.ErrNoRows) {
		return Count{Missing: true}, nil
	}
	if err != nil {
		return Count{}, err
	}
	// reltuples is -1 for a table never analyzed.
	if limit >= 0 && estimate != nil && *estimate > limit {
		return Count{Rows: *estimate, Estimate: true}, nil
	}
	var c Count
	err = q.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, table}.Sanitize()).Scan(&c.Rows)
	return c, err
}

// Write renders the report for a person.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	backlog := func(side string, sb pgshiftdb.SideBacklog) string {
		if _, ok := r.Unreachable[side]; ok {
			return "unknown (unreachable)"
		}
		return sb.String()
	}
	fmt.Fprintf(&b, "repair backlog\told: %s\tnew: %s\n", backlog("old", r.Backlog.Old), backlog("new", r.Backlog.New))
	if len(r.Backfills) > 0 {
		fmt.Fprintf(&b, "\nbackfill\tchunks done\tleased\trows copied\tworkers\n")
		for _, j := range r.Backfills {
			state := fmt.Sprintf("%d of %d", j.Done, j.Chunks)
			if j.Done == j.Chunks {
				state += " (finished)"
			}
			fmt.Fprintf(&b, "%s\t%s\t%d\t%d\t%d\n", j.Table, state, j.Leased, j.Rows, j.Workers)
		}
	}
	if len(r.Facades) == 0 {
		fmt.Fprintf(&b, "\nfacades\tnone reported in the last %s\n", FacadeWindow)
	} else {
		fmt.Fprintf(&b, "\nfacade (reported in the last %s)\tbreaker old\tbreaker new\tseen\n", FacadeWindow)
		for _, f := range r.Facades {
			fmt.Fprintf(&b, "%s\t%s\t%s\t%.0fs ago\n", f.Instance, breakerText(f.BreakerOld, f.SkippedOld), breakerText(f.BreakerNew, f.SkippedNew), f.SeenSecondsAgo)
		}
	}
	fmt.Fprintf(&b, "\nschema %s\told\tnew\n", r.Schema)
	for _, t := range r.Tables {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", t.Table, t.Old, t.New)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if _, err := io.WriteString(tw, b.String()); err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, side := range []string{"old", "new"} {
		if why, ok := r.Unreachable[side]; ok {
			if _, err := fmt.Fprintf(w, "\n%s could not be reached, so its backlog and counts are unknown (\"?\"): %s\n", side, why); err != nil {
				return err
			}
		}
	}
	return nil
}

// breakerText is a breaker's state, with the calls that skipped its side
// when there were any.
func breakerText(state string, skipped int64) string {
	if skipped == 0 {
		return state
	}
	return fmt.Sprintf("%s (%d calls skipped it)", state, skipped)
}

// String renders a count as "42", "~2000000 (estimate)", "missing" or "?"
// (unreachable).
func (c Count) String() string {
	switch {
	case c.Unknown:
		return "?"
	case c.Missing:
		return "missing"
	case c.Estimate:
		return fmt.Sprintf("~%d (estimate)", c.Rows)
	}
	return fmt.Sprint(c.Rows)
}
