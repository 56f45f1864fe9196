// Package cutover decides whether a cohort may move from one migration stage
// to another, and moves it in a flagd flag file.
//
// # Gates
//
// Every forward move of a cohort has preconditions that can be measured;
// Check measures them and says, gate by gate, the measured value, the limit
// and what to run when it is not met:
//
//   - into dualwrite: pgshift installed on both sides; the schemas equal
//     (schema-diff); every table keyed (a primary key or a unique index on
//     NOT NULL columns), left out, or chosen to be copied whole
//     (Target.CopyWhole);
//   - into shadow: every table backfilled; every table's latest verify
//     equal and recent; a full verify since a cohort was last in off; the
//     repair backlog small and its oldest entry young;
//   - into live: new's sequences ahead of old's by a margin; a full verify
//     since a cohort was last in off; the shadow reads of the last window
//     clean, and enough of them to tell: those of the users the move moves
//     (Target.Move), as one cohort's clean reads say nothing of another's;
//   - into rampdown: the repair backlog small;
//   - into complete: both repair logs empty; every table's latest verify
//     equal and recent; a full verify since a cohort was last in off.
//
// A cohort in off writes old only, so new misses its rows and no repair log
// knows of them. pgshift move records every move it makes, rollbacks too,
// in pgshift.moves with the stages the flag file could give before and
// after; while some cohort can be in off (by the latest move, or by the
// flag file the move is made in) the gates into shadow, live and complete
// are not met, and once none can, they want a full verify of every table
// that started after the last move made while one could. A verify of the
// changed rows never counts across such a period.
//
// Every forward move also wants each partition of a captured table to
// refuse TRUNCATE, and durable commits on both sides (fsync on and
// synchronous_commit not off, as the gate's own session sees them): a side
// that loses commits in a crash loses writes the facade acknowledged and
// settled, and nothing would repair them. These two gates are shown only
// when they are not met or waived. Test and demo servers run without
// durable commits; Limits.AllowNonDurable waives that gate for them, and the
// report says it was waived.
//
// A forward move that skips a stage is refused whatever the gates say.
// Backward moves (the rollback) are always allowed; Check says what to run
// before moving forward again.
//
// # Moves
//
// FlagFile.Prepare works a move of a cohort out on a flagd file (its string
// stage flag; a file of the boolean scheme is refused) and refuses,
// before any gate is measured, what cannot be done; Edit.Apply writes it
// atomically, changing only the values the move changes (the rest of the
// file keeps its bytes), and keeps the version it replaced with a record of
// the move for PrepareUndo. A percentage moves points of the fractional
// rollout: flagd places users by bucket position, so the points are carved
// off the edge of a From bucket into a To bucket beside it, and only From
// users move, only to To; a file without a rollout gets one where the users
// no rule places are (with the default variant set to their stage, as a
// fractional gives requests without a routing key the default variant). An
// undo is the recorded move reversed and is gated as such: undoing a
// rollback to off is a forward move that may skip a stage. RecordMove
// writes each applied move, with the stages the file could give before and
// after, into pgshift.moves.
//
// The gates read facts pgshift keeps in its own schema: the backfill's
// progress, pgshift.verify_runs (each verify's result per table) and
// pgshift.shadow_reads and pgshift.shadow_reads_by_user (every facade's
// shadow-read counts, in all and per user), pgshift.moves
// (the moves pgshift move made), all on new, and both repair logs.
package cutover

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pgshiftdb"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/schemadiff"
	"github.com/pgshift/pgshift/internal/sequences"
	"github.com/pgshift/pgshift/internal/verify"
)

// The limits' defaults.
const (
	MaxBacklogDefault     = 1000
	MaxBacklogAgeDefault  = time.Minute
	MaxVerifyAgeDefault   = 24 * time.Hour
	MinSequenceGapDefault = sequences.DefaultGap / 10
	ShadowWindowDefault   = 10 * time.Minute
	MinShadowReadsDefault = 100
)

// Limits are the thresholds of the gates. The zero value of a field takes
// its default; MaxMismatches' default is 0 (no mismatch at all).
type Limits struct {
	// MaxBacklog is the most repair-log entries (both sides) a move into
	// shadow or rampdown accepts.
	MaxBacklog int64
	// MaxBacklogAge is the oldest a repair-log entry may be.
	MaxBacklogAge time.Duration
	// MaxVerifyAge is the oldest a table's latest verify may be.
	MaxVerifyAge time.Duration
	// MinSequenceGap is how far ahead of old's each of new's sequences must
	// be before anyone writes new first.
	MinSequenceGap int64
	// ShadowWindow is how far back the shadow reads are counted.
	ShadowWindow time.Duration
	// MinShadowReads is how many shadow reads the window must hold for its
	// mismatch count to mean something.
	MinShadowReads int64
	// MaxMismatches is the most shadow-read mismatches the window may hold.
	MaxMismatches int64
	// AllowNonDurable waives the durable-commits gate, for test and demo
	// servers that run with fsync or synchronous_commit off: a crash of such
	// a side can lose writes the facade acknowledged. Never in production.
	AllowNonDurable bool
}

func (l Limits) withDefaults() Limits {
	if l.MaxBacklog == 0 {
		l.MaxBacklog = MaxBacklogDefault
	}
	if l.MaxBacklogAge == 0 {
		l.MaxBacklogAge = MaxBacklogAgeDefault
	}
	if l.MaxVerifyAge == 0 {
		l.MaxVerifyAge = MaxVerifyAgeDefault
	}
	if l.MinSequenceGap == 0 {
		l.MinSequenceGap = MinSequenceGapDefault
	}
	if l.ShadowWindow == 0 {
		l.ShadowWindow = ShadowWindowDefault
	}
	if l.MinShadowReads == 0 {
		l.MinShadowReads = MinShadowReadsDefault
	}
	return l
}

// Gate is one precondition, measured.
type Gate struct {
	Name     string `json:"gate"`
	Measured string `json:"measured"`
	Limit    string `json:"limit"`
	OK       bool   `json:"ok"`
	// Fix says what to run when the gate is not met.
	Fix string `json:"fix,omitempty"`
}

// Report is what Check found for one move.
type Report struct {
	From    flags.Stage `json:"from"`
	To      flags.Stage `json:"to"`
	Forward bool        `json:"forward"`
	Gates   []Gate      `json:"gates"`
	// Ready says the move may go ahead: a backward move, or a forward one
	// of one stage whose gates all hold.
	Ready bool `json:"ready"`
	// Before lists what to run before moving forward again (after a
	// backward move).
	Before []string `json:"before_moving_forward_again,omitempty"`
}

// Blocking returns the gates that are not met.
func (r *Report) Blocking() []Gate {
	var out []Gate
	for _, g := range r.Gates {
		if !g.OK {
			out = append(out, g)
		}
	}
	return out
}

// Target says what Check looks at: the two databases and the application's
// tables (every table of Schema when Tables is empty).
type Target struct {
	Old, New *pgxpool.Pool
	Schema   string
	Tables   []string
	// CopyWhole are the patterns (path.Match) of the keyless tables the
	// operator chose to copy whole (pgshift --copy-whole): the gate into
	// dualwrite accepts them, and fixes that name them carry the patterns.
	CopyWhole []string
	// Stages are the stages the flag file can give a user now
	// (FlagFile.FileStages), when the move is made in one: off among them
	// means some cohort writes old only now, whatever pgshift.moves says.
	Stages []flags.Stage
	// Move is the move the gates are for, when it is made in a flag file:
	// the shadow-read gates then count the reads and mismatches of the users
	// it moves (those the file gives From now and To after it), found among
	// the users pgshift.shadow_reads_by_user recorded. Without it they count
	// every cohort's.
	Move *Edit
}

// Check measures the gates of moving a cohort from stage from to stage to.
// The error is for what stops the measuring (a database unreachable); gates
// that are not met are in the report.
func Check(ctx context.Context, t Target, from, to flags.Stage, limits Limits) (*Report, error) {
	if !from.Valid() || !to.Valid() {
		return nil, fmt.Errorf("cutover: stages %v to %v: %w", from, to, flags.ErrUnknownStage)
	}
	if t.Schema == "" {
		t.Schema = "public"
	}
	limits = limits.withDefaults()
	r := &Report{From: from, To: to, Forward: to > from}
	if !r.Forward {
		r.Ready = true
		r.Before = beforeForwardAgain(from, to)
		return r, nil
	}
	if to != from+1 {
		r.Gates = append(r.Gates, Gate{Name: "one stage at a time", Measured: fmt.Sprintf("%v to %v", from, to),
			Limit: fmt.Sprintf("%v to %v", from, from+1), Fix: fmt.Sprintf("move to %v first", from+1)})
		return r, nil
	}
	c := checker{Target: t, limits: limits, q: pgshiftdb.New()}
	var err error
	switch to {
	case flags.StageDualWrite:
		err = c.run(ctx, r, c.installed, c.schemaEqual, c.keyed)
	case flags.StageShadow:
		err = c.run(ctx, r, c.backfilled, c.verified, c.verifiedSinceOneSided, c.backlogSmall)
	case flags.StageLive:
		err = c.run(ctx, r, c.sequencesAhead, c.verifiedSinceOneSided, c.shadowClean)
	case flags.StageRampdown:
		err = c.run(ctx, r, c.backlogSmall)
	case flags.StageComplete:
		err = c.run(ctx, r, c.backlogEmpty, c.verified, c.verifiedSinceOneSided)
	}
	if err != nil {
		return nil, err
	}
	r.Ready = len(r.Blocking()) == 0
	return r, nil
}

// beforeForwardAgain says what a backward move leaves to do: a stage that
// writes one side only leaves the other behind.
func beforeForwardAgain(from, to flags.Stage) []string {
	switch {
	case to == flags.StageOff && from >= flags.StageDualWrite:
		return []string{"new takes no writes in off: once the cohort is back in dualwrite, run a full `pgshift verify --repair` (old to new); the gates into shadow, live and complete want one that started after every cohort left off"}
	case from == flags.StageComplete:
		return []string{"old took no writes in complete: run `pgshift verify --repair --source new` before moving into complete again"}
	}
	return nil
}

type checker struct {
	Target
	limits Limits
	q      *pgshiftdb.Queries
}

// run runs gates in order, each appending what it measured.
func (c checker) run(ctx context.Context, r *Report, gates ...func(context.Context, *Report) error) error {
	for _, g := range append(gates, c.durable, c.truncateRefused) {
		if err := g(ctx, r); err != nil {
			return fmt.Errorf("cutover: %w", err)
		}
	}
	return nil
}

// truncateRefused is a gate of every forward move, reported only when it is
// not met: a partition of a captured table attached after pgshift install
// --capture lacks the trigger that refuses TRUNCATE, so a TRUNCATE of it
// would empty one side only.
func (c checker) truncateRefused(ctx context.Context, r *Report) error {
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		parts, err := c.q.PartitionsWithoutTruncateTrigger(ctx, c.pool(side))
		if err != nil {
			return fmt.Errorf("%s: partitions of captured tables: %w", side, err)
		}
		if len(parts) == 0 {
			continue
		}
		names := make([]string, len(parts))
		for i, p := range parts {
			names[i] = p.TableSchema + "." + p.TableName
		}
		r.Gates = append(r.Gates, Gate{Name: "TRUNCATE refused on every partition on " + side.String(),
			Measured: fmt.Sprintf("%d without it (%s)", len(parts), strings.Join(names, ", ")), Limit: "0",
			Fix: "pgshift install --capture (again: it covers the partitions attached since)"})
	}
	return nil
}

// durable is a gate of every forward move, shown when it is not met or
// waived: a side that is not pgshiftdb.DurabilitySettingsRow.Durable can
// lose, in a crash, commits the facade has settled. It reads the settings in
// its own session: a role or database setting of the application's own is
// not seen (the facade's start warns of those).
func (c checker) durable(ctx context.Context, r *Report) error {
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		s, err := c.q.DurabilitySettings(ctx, c.pool(side))
		if err != nil {
			return fmt.Errorf("%s: durability settings: %w", side, err)
		}
		if s.Durable() {
			continue
		}
		g := Gate{Name: "durable commits on " + side.String(),
			Measured: fmt.Sprintf("fsync %s, synchronous_commit %s", s.Fsync, s.SynchronousCommit),
			Limit:    "fsync on, synchronous_commit not off",
			Fix:      "turn fsync and synchronous_commit on, on " + side.String() + " (postgresql.conf, ALTER SYSTEM or the service's parameters; then reload)"}
		if c.limits.AllowNonDurable {
			g.OK, g.Limit = true, "waived (--allow-non-durable: a crash of this side can lose acknowledged writes)"
		}
		r.Gates = append(r.Gates, g)
	}
	return nil
}

func (c checker) installed(ctx context.Context, r *Report) error {
	for _, side := range []flags.Side{flags.SideOld, flags.SideNew} {
		ok, err := c.q.Installed(ctx, c.pool(side))
		if err != nil {
			return fmt.Errorf("%s: %w", side, err)
		}
		r.Gates = append(r.Gates, Gate{Name: "pgshift installed on " + side.String(), Measured: yesNo(ok), Limit: "yes", OK: ok,
			Fix: "pgshift install"})
	}
	return nil
}

func (c checker) schemaEqual(ctx context.Context, r *Report) error {
	rep, err := schemadiff.Diff(ctx, c.Old, c.New, c.Schema, schemadiff.Options{Tables: c.Tables})
	if err != nil {
		return err
	}
	n := len(rep.Differences)
	r.Gates = append(r.Gates, Gate{Name: "schemas equal", Measured: fmt.Sprintf("%d differences", n), Limit: "0", OK: n == 0,
		Fix: "pgshift schema-diff, then change new's schema to match"})
	return nil
}

// keyed is a gate into dualwrite: every table has a primary key or a unique
// index on NOT NULL columns, since repair, backfill and verify find rows by
// key, or is one Target.CopyWhole names (copied whole, compared as a
// multiset of rows). Found here, before any cohort writes both sides,
// rather than at backfill, when cohorts already are in dualwrite.
func (c checker) keyed(ctx context.Context, r *Report) error {
	tables, err := c.tables(ctx)
	if err != nil {
		return err
	}
	keyed, err := rowsync.Keyed(ctx, c.Old, c.Schema, tables)
	if err != nil {
		return fmt.Errorf("old: %w", err)
	}
	var keyless, whole []string
	for _, t := range tables {
		k, ok := keyed[t]
		switch {
		case !ok:
			return fmt.Errorf("old: table %s: %w (check --schema and --table)", pgx.Identifier{c.Schema, t}.Sanitize(), rowsync.ErrNoTable)
		case k:
		case rowsync.MatchTable(c.CopyWhole, t):
			whole = append(whole, t)
		default:
			keyless = append(keyless, t)
		}
	}
	g := Gate{Name: "every table keyed", Measured: fmt.Sprintf("%d without a key", len(keyless)), Limit: "0", OK: len(keyless) == 0}
	if len(keyless) > 0 {
		g.Measured += " (" + strings.Join(keyless, ", ") + ")"
		var fixes []string
		for _, t := range keyless {
			q := pgx.Identifier{c.Schema, t}.Sanitize()
			fixes = append(fixes, fmt.Sprintf("%s: add a key on old and new (ALTER TABLE %s ADD PRIMARY KEY (its identifying columns), or a surrogate one: ALTER TABLE %s ADD COLUMN pgshift_key bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, on new while it is empty so backfill copies old's values), "+
				"or leave it out (--exclude-table %s on every command), "+
				"or, if the application does not write it during the migration, copy it whole (--copy-whole %s on every command: backfill copies it in one snapshot, verify compares it as a multiset of rows, the facade refuses to write it)",
				t, q, q, t, t))
		}
		g.Fix = strings.Join(fixes, "; ")
	}
	if len(whole) > 0 {
		g.Measured += fmt.Sprintf("; %d copied whole (%s)", len(whole), strings.Join(whole, ", "))
	}
	r.Gates = append(r.Gates, g)
	return nil
}

// tables are the tables the gates are about: those named, or every table
// of the schema on old.
func (c checker) tables(ctx context.Context) ([]string, error) {
	if len(c.Tables) > 0 {
		return c.Tables, nil
	}
	return rowsync.ListTables(ctx, c.Old, c.Schema)
}

func (c checker) backfilled(ctx context.Context, r *Report) error {
	tables, err := c.tables(ctx)
	if err != nil {
		return err
	}
	done, err := c.q.BackfilledTables(ctx, c.New, c.Schema)
	if err != nil {
		return fmt.Errorf("backfill progress on new: %w", err)
	}
	var missing []string
	for _, t := range tables {
		if !slices.Contains(done, t) {
			missing = append(missing, t)
		}
	}
	r.Gates = append(r.Gates, Gate{Name: "backfill finished", Measured: fmt.Sprintf("%d of %d tables", len(tables)-len(missing), len(tables)),
		Limit: fmt.Sprintf("%d of %d", len(tables), len(tables)), OK: len(missing) == 0,
		Fix: "pgshift backfill" + c.tableFlags(missing)})
	return nil
}

func (c checker) verified(ctx context.Context, r *Report) error {
	tables, err := c.tables(ctx)
	if err != nil {
		return err
	}
	runs, err := c.q.LatestVerifyRuns(ctx, c.New, c.Schema)
	if err != nil {
		return fmt.Errorf("verify results on new: %w", err)
	}
	latest := map[string]pgshiftdb.LatestVerifyRunsRow{}
	for _, run := range runs {
		latest[run.TableName] = run
	}
	var unverified, unequal, stale []string
	changed := 0
	for _, t := range tables {
		run, ok := latest[t]
		switch {
		case !ok:
			unverified = append(unverified, t)
		case !run.Equal:
			unequal = append(unequal, t)
		case time.Since(run.FinishedAt) > c.limits.MaxVerifyAge:
			stale = append(stale, t)
		case run.Kind == verify.KindChanged:
			changed++
		}
	}
	var parts []string
	for _, p := range []struct {
		what   string
		tables []string
	}{{"never verified", unverified}, {"not equal", unequal}, {"verified too long ago", stale}} {
		if len(p.tables) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", p.what, strings.Join(p.tables, ", ")))
		}
	}
	if changed > 0 {
		parts = append(parts, fmt.Sprintf("%d by their rows changed since a full verify", changed))
	}
	measured := fmt.Sprintf("%d of %d tables equal", len(tables)-len(unverified)-len(unequal)-len(stale), len(tables))
	if len(parts) > 0 {
		measured += " (" + strings.Join(parts, "; ") + ")"
	}
	// Tables that were equal and are only stale need their changed rows
	// compared; the others a full verify.
	var fixes []string
	if bad := slices.Concat(unverified, unequal); len(bad) > 0 {
		fixes = append(fixes, "pgshift verify --repair"+c.tableFlags(bad))
	}
	if len(stale) > 0 {
		fixes = append(fixes, "pgshift verify --changed"+c.tableFlags(stale))
	}
	r.Gates = append(r.Gates, Gate{
		Name:     "verify equal",
		Measured: measured,
		Limit:    fmt.Sprintf("every table, within %s (a full verify, or one of the rows changed since)", c.limits.MaxVerifyAge),
		OK:       len(fixes) == 0,
		Fix:      strings.Join(fixes, "; "),
	})
	return nil
}

// verifiedSinceOneSided wants, once no cohort writes old only, a full
// verify of every table that started after the last period in which some
// cohort did (pgshift.moves): rows written in off never reached new, and
// neither the repair log nor a verify of the changed rows knows of them.
func (c checker) verifiedSinceOneSided(ctx context.Context, r *Report) error {
	p, err := c.q.OneSidedPeriod(ctx, c.New, flags.StageOff.String())
	if err != nil {
		return fmt.Errorf("moves on new: %w", err)
	}
	const name = "full verify since a cohort was last in off"
	if p.Ongoing || slices.Contains(c.Stages, flags.StageOff) {
		r.Gates = append(r.Gates, Gate{Name: name, Measured: "a cohort is in off now: new misses its writes", Limit: "no cohort in off",
			Fix: "move every cohort out of off (pgshift move ... --to dualwrite), then pgshift verify --repair"})
		return nil
	}
	if p.EndedAt.Equal(time.Unix(0, 0)) {
		r.Gates = append(r.Gates, Gate{Name: name, Measured: "no cohort in off since moves are recorded", Limit: "a full verify after", OK: true})
		return nil
	}
	tables, err := c.tables(ctx)
	if err != nil {
		return err
	}
	done, err := c.q.FullyVerifiedSince(ctx, c.New, pgshiftdb.FullyVerifiedSinceParams{TableSchema: c.Schema, Since: p.EndedAt})
	if err != nil {
		return fmt.Errorf("verify results on new: %w", err)
	}
	var missing []string
	for _, t := range tables {
		if !slices.Contains(done, t) {
			missing = append(missing, t)
		}
	}
	r.Gates = append(r.Gates, Gate{Name: name,
		Measured: fmt.Sprintf("%d of %d tables verified in full and equal since %s", len(tables)-len(missing), len(tables), p.EndedAt.UTC().Format(time.RFC3339)),
		Limit:    fmt.Sprintf("%d of %d", len(tables), len(tables)), OK: len(missing) == 0,
		Fix: "pgshift verify --repair" + c.tableFlags(missing)})
	return nil
}

func (c checker) backlog(ctx context.Context) (pgshiftdb.Backlog, error) {
	var b pgshiftdb.Backlog
	var err error
	if b.Old, err = pgshiftdb.ReadBacklog(ctx, c.Old); err != nil {
		return b, fmt.Errorf("old: %w", err)
	}
	if b.New, err = pgshiftdb.ReadBacklog(ctx, c.New); err != nil {
		return b, fmt.Errorf("new: %w", err)
	}
	return b, nil
}

func (c checker) backlogSmall(ctx context.Context, r *Report) error {
	b, err := c.backlog(ctx)
	if err != nil {
		return err
	}
	oldest := max(b.Old.OldestAge, b.New.OldestAge)
	r.Gates = append(r.Gates,
		Gate{Name: "repair backlog", Measured: fmt.Sprintf("%d entries", b.Entries()), Limit: fmt.Sprintf("at most %d", c.limits.MaxBacklog),
			OK: b.Entries() <= c.limits.MaxBacklog, Fix: "pgshift repair (and find why writes miss a side: pgshift status)"},
		Gate{Name: "oldest repair entry", Measured: oldest.Round(time.Second).String(), Limit: fmt.Sprintf("at most %s", c.limits.MaxBacklogAge),
			OK: oldest <= c.limits.MaxBacklogAge, Fix: "pgshift repair; a side may be unreachable"})
	return nil
}

func (c checker) backlogEmpty(ctx context.Context, r *Report) error {
	b, err := c.backlog(ctx)
	if err != nil {
		return err
	}
	r.Gates = append(r.Gates, Gate{Name: "repair logs empty", Measured: fmt.Sprintf("%d entries", b.Entries()), Limit: "0",
		OK: b.Entries() == 0, Fix: "pgshift repair"})
	return nil
}

func (c checker) sequencesAhead(ctx context.Context, r *Report) error {
	moved, err := sequences.Status(ctx, c.Old, c.New, c.Schema, sequences.Options{Tables: c.Tables})
	if err != nil {
		return err
	}
	var least int64
	var behind []string
	for i, m := range moved {
		ahead := m.NewBefore - m.Old
		if i == 0 || ahead < least {
			least = ahead
		}
		if ahead < c.limits.MinSequenceGap {
			behind = append(behind, m.Sequence)
		}
	}
	measured := "no sequences"
	switch {
	case len(moved) > 0 && least < 0:
		measured = fmt.Sprintf("one behind by %d", -least)
	case len(moved) > 0:
		measured = fmt.Sprintf("the least ahead by %d", least)
	}
	r.Gates = append(r.Gates, Gate{Name: "new's sequences ahead of old's", Measured: measured,
		Limit: fmt.Sprintf("at least %d", c.limits.MinSequenceGap), OK: len(behind) == 0,
		Fix: "pgshift sync-sequences"})
	return nil
}

// shadowClean wants the shadow reads of the last window clean, and enough
// of them: those of the cohort the move moves when the move is known
// (Target.Move), every cohort's otherwise.
func (c checker) shadowClean(ctx context.Context, r *Report) error {
	since := time.Now().Add(-c.limits.ShadowWindow)
	all, err := c.q.ShadowReadsSince(ctx, c.New, since)
	if err != nil {
		return fmt.Errorf("shadow reads on new: %w", err)
	}
	window := c.limits.ShadowWindow.String()
	readsGate := Gate{Name: "shadow reads", Limit: fmt.Sprintf("at least %d", c.limits.MinShadowReads)}
	mismatchGate := Gate{Name: "shadow mismatches", Limit: fmt.Sprintf("at most %d", c.limits.MaxMismatches),
		Fix: "find the mismatching operations in the facade's logs (they name the routing key), fix them, pgshift verify --repair"}
	if c.Move == nil {
		readsGate.Measured = fmt.Sprintf("%d in the last %s, every cohort's (no cohort named: name it to count its own)", all.Reads, window)
		readsGate.OK = all.Reads >= c.limits.MinShadowReads
		readsGate.Fix = "keep the cohort in shadow longer, with traffic"
		mismatchGate.Measured = fmt.Sprintf("%d in the last %s, every cohort's", all.Mismatches, window)
		mismatchGate.OK = all.Mismatches <= c.limits.MaxMismatches
		r.Gates = append(r.Gates, readsGate, mismatchGate)
		return nil
	}
	rows, err := c.q.UserShadowReadsSince(ctx, c.New, since)
	if err != nil {
		return fmt.Errorf("shadow reads per user on new: %w", err)
	}
	moves, err := c.Move.MovesUser()
	if err != nil {
		return err
	}
	var reads, mismatches, recorded int64
	users := map[string]bool{} // routing keys: a user may come with several attribute sets
	for _, row := range rows {
		recorded += row.Reads
		var attrs map[string]any
		if err := json.Unmarshal([]byte(row.Attributes), &attrs); err != nil {
			return fmt.Errorf("shadow reads of %q on new: attributes %s: %w", row.RoutingKey, row.Attributes, err)
		}
		in, err := moves(row.RoutingKey, attrs)
		if err != nil {
			return err
		}
		if in {
			users[row.RoutingKey] = true
			reads += row.Reads
			mismatches += row.Mismatches
		}
	}
	unrecorded := ""
	if n := all.Reads - recorded; n > 0 {
		unrecorded = fmt.Sprintf("; %d not recorded per user (more than %d users per facade in 10 s)", n, pgshiftdb.MaxShadowUsersPerFlush)
	}
	readsGate.Measured = fmt.Sprintf("%d of the cohort's (%d users) in the last %s; %d of every cohort's%s", reads, len(users), window, all.Reads, unrecorded)
	readsGate.OK = reads >= c.limits.MinShadowReads
	readsGate.Fix = "keep the cohort in shadow longer, with traffic: only the reads of the users this move moves count"
	mismatchGate.Measured = fmt.Sprintf("%d of the cohort's in the last %s; %d of every cohort's", mismatches, window, all.Mismatches)
	mismatchGate.OK = mismatches <= c.limits.MaxMismatches
	r.Gates = append(r.Gates, readsGate, mismatchGate)
	return nil
}

func (c checker) pool(side flags.Side) *pgxpool.Pool {
	if side == flags.SideNew {
		return c.New
	}
	return c.Old
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// tableFlags is " --table a --table b" for a fix limited to those tables,
// with the --copy-whole patterns that match any of them (without it the
// command refuses a keyless table).
func (c checker) tableFlags(tables []string) string {
	var b strings.Builder
	for _, t := range tables {
		b.WriteString(" --table ")
		b.WriteString(t)
	}
	for _, p := range c.CopyWhole {
		if slices.ContainsFunc(tables, func(t string) bool { return rowsync.MatchTable([]string{p}, t) }) {
			b.WriteString(" --copy-whole ")
			b.WriteString(p)
		}
	}
	return b.String()
}
