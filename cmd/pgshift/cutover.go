package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
)

func init() {
	register(&command{
		name:    "preflight",
		summary: "check the gates of moving a cohort to a stage (exit 0 ready, 1 not ready)",
		usage: `Usage: pgshift preflight --to STAGE (--from STAGE | --flags FILE COHORT) [limits] [flags]

Checks what must hold before a cohort enters stage --to, and prints each gate
with its measured value, its limit and what to run when it is not met:

  into dualwrite  pgshift installed on both sides; schemas equal; every
                  table keyed, left out (--exclude-table) or, keyless and
                  not written by the application, copied whole
                  (--copy-whole)
  into shadow     every table backfilled; verify equal and recent; no
                  cohort in off, and a full verify since one last was;
                  repair backlog small and young
  into live       new's sequences ahead of old's; no cohort in off, and a
                  full verify since; the cohort's shadow reads of the last
                  window clean, and enough of them (the reads of the users
                  the move moves, with --flags and a cohort; every
                  cohort's with --from)
  into rampdown   repair backlog small and young
  into complete   both repair logs empty; verify equal and recent; no
                  cohort in off, and a full verify since

Every forward move also wants durable commits on both sides (fsync on,
synchronous_commit not off): a side that loses commits in a crash loses
writes the application was told were saved. --allow-non-durable waives it
for test servers, and the report says so.

pgshift move records every move in pgshift.moves (rollbacks too), so the
gates know when some cohort last wrote old only; a verify --changed never
counts across such a period.

A forward move that skips a stage is never ready. A backward move (rollback)
always is, and preflight prints what to run before moving forward again.

The cohort's current stage is --from, or what the flagd file --flags gives
the cohort (--keys, --percent with --from, --rule or --default). With a flag
service of your own (LaunchDarkly, DevCycle, a relay proxy), run preflight
with --from and --to in the deployment pipeline before the flag is flipped
there.

Exit status: 0 ready, 1 not ready, 2 error.

Examples:
  pgshift preflight --from shadow --to live
  pgshift preflight --flags flags.json --keys 123,456 --to shadow --json
  pgshift preflight --from dualwrite --to shadow --max-backlog 100 --max-verify-age 1h
`,
		tables: true,
		run:    runPreflight,
	})
	register(&command{
		name:    "move",
		summary: "move a cohort to a stage in the application's flagd file, gates first",
		usage: `Usage: pgshift move --flags FILE COHORT --to STAGE [--force] [limits] [flags]
       pgshift move --flags FILE --undo

Changes the stage of one cohort in the flagd file the application reads
(flags.NewFileEvaluator reloads it within tens of milliseconds). The cohort
is one of:

  --keys 123,456          routing keys (user or tenant ids): they get a rule
                          of their own ahead of every other rule
  --percent 10 --from off ten points of the fractional rollout's off bucket,
                          given to a bucket of --to right beside it, so no
                          other user changes bucket; a file without a rollout
                          gets one where the users no rule places are
  --rule 2                the users the 2nd branch of the targeting "if" places
  --default               everyone no rule places

What cannot be done (a percentage of a stage nobody is in, keys in different
stages, a file that does not load) is refused before any gate. The gates of
the move run next (see pgshift preflight; into live they count the shadow
reads and mismatches of the users this move moves only); a gate not met
refuses the move, naming it, unless --force. A move that skips a stage
forward is refused even with --force. A backward move (rollback) is never
refused, needs no database, and prints what to run before moving forward
again.

Only the part of the file the move changes is rewritten. The file is written
atomically (a temporary file renamed over it), checked as the application
would check it, and the version it replaces is kept beside it (FILE.prev,
with what the move did in FILE.prev.json). Every move is recorded in
pgshift.moves on new, for the gates. --undo reverses the last move, gated as
the move back: undoing a rollback to off is off -> the stage left, refused
when that skips a stage; refused too when the file changed since.

Examples:
  pgshift move --flags flags.json --keys 123,456 --to dualwrite
  pgshift move --flags flags.json --percent 10 --from dualwrite --to shadow
  pgshift move --flags flags.json --rule 2 --to off        # roll a cohort back
  pgshift move --flags flags.json --undo
`,
		tables: true,
		run:    runMove,
	})
}

// cohortFlags are the flags that name a flag file and a cohort in it.
type cohortFlags struct {
	file, flag string
	keys       string
	percent    int
	rule       int
	deflt      bool
	from, to   string
	limits     cutover.Limits
}

func (cf *cohortFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&cf.file, "flags", "", "the flagd file the application reads (flags.NewFileEvaluator)")
	fs.StringVar(&cf.flag, "flag", flags.DefaultStageFlag, "the stage flag's key in the file")
	fs.StringVar(&cf.keys, "keys", "", "the cohort: routing keys, comma-separated")
	fs.IntVar(&cf.percent, "percent", 0, "the cohort: percentage points of the fractional rollout's --from bucket")
	fs.IntVar(&cf.rule, "rule", 0, "the cohort: the Nth branch (from 1) of the flag's targeting \"if\"")
	fs.BoolVar(&cf.deflt, "default", false, "the cohort: everyone no rule places")
	fs.StringVar(&cf.from, "from", "", "the stage the cohort is in now (with --percent: the bucket to take from)")
	fs.StringVar(&cf.to, "to", "", "the stage to move the cohort to: "+stageList())
	fs.Int64Var(&cf.limits.MaxBacklog, "max-backlog", cutover.MaxBacklogDefault, "gate: most repair-log entries, both sides")
	fs.DurationVar(&cf.limits.MaxBacklogAge, "max-backlog-age", cutover.MaxBacklogAgeDefault, "gate: oldest repair-log entry")
	fs.DurationVar(&cf.limits.MaxVerifyAge, "max-verify-age", cutover.MaxVerifyAgeDefault, "gate: oldest a table's latest verify may be")
	fs.Int64Var(&cf.limits.MinSequenceGap, "min-sequence-gap", cutover.MinSequenceGapDefault, "gate: how far new's sequences must be ahead of old's")
	fs.DurationVar(&cf.limits.ShadowWindow, "shadow-window", cutover.ShadowWindowDefault, "gate: how far back shadow reads count")
	fs.Int64Var(&cf.limits.MinShadowReads, "min-shadow-reads", cutover.MinShadowReadsDefault, "gate: fewest shadow reads in the window")
	fs.Int64Var(&cf.limits.MaxMismatches, "max-mismatches", 0, "gate: most shadow-read mismatches in the window")
	fs.BoolVar(&cf.limits.AllowNonDurable, "allow-non-durable", false,
		"gate: accept a side with fsync or synchronous_commit off (test servers only: its crash can lose acknowledged writes)")
}

func stageList() string {
	names := make([]string, 0, len(flags.AllStages()))
	for _, s := range flags.AllStages() {
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}

// cohortIsSet says a cohort flag was given.
func (cf *cohortFlags) cohortIsSet() bool {
	return cf.keys != "" || cf.percent != 0 || cf.rule != 0 || cf.deflt
}

func (cf *cohortFlags) flagFile() cutover.FlagFile {
	return cutover.FlagFile{Path: cf.file, Flag: cf.flag}
}

// cohort is the cohort the flags name.
func (cf *cohortFlags) cohort() (cutover.Cohort, error) {
	c := cutover.Cohort{Percent: cf.percent, Rule: cf.rule, Default: cf.deflt}
	if cf.keys != "" {
		for k := range strings.SplitSeq(cf.keys, ",") {
			if k = strings.TrimSpace(k); k != "" {
				c.Keys = append(c.Keys, k)
			}
		}
	}
	if cf.percent != 0 {
		if cf.from == "" {
			return c, errors.New("--percent takes points from one stage's bucket: name it with --from")
		}
		from, err := flags.ParseStage(cf.from)
		if err != nil {
			return c, fmt.Errorf("--from: %w", err)
		}
		c.From = from
	}
	return c, nil
}

// stages returns the move's stages: --to, and --from or the cohort's stage
// in the flag file.
func (cf *cohortFlags) stages() (from, to flags.Stage, err error) {
	if cf.to == "" {
		return 0, 0, errors.New("name the stage to move to with --to (" + stageList() + ")")
	}
	if to, err = flags.ParseStage(cf.to); err != nil {
		return 0, 0, fmt.Errorf("--to: %w", err)
	}
	if cf.file == "" || !cf.cohortIsSet() {
		if cf.cohortIsSet() {
			return 0, 0, errors.New("a cohort (--keys, --percent, --rule, --default) is read from a flag file: give --flags FILE")
		}
		if cf.from == "" {
			return 0, 0, errors.New("say where the cohort is now: --from STAGE, or --flags FILE with the cohort (--keys, --percent, --rule, --default)")
		}
		from, err = flags.ParseStage(cf.from)
		if err != nil {
			return 0, 0, fmt.Errorf("--from: %w", err)
		}
		return from, to, nil
	}
	c, err := cf.cohort()
	if err != nil {
		return 0, 0, err
	}
	from, err = cf.flagFile().Stage(c)
	return from, to, err
}

// preflightJSON is preflight's --json output.
type preflightJSON struct {
	Cohort string `json:"cohort,omitempty"`
	*cutover.Report
}

func runPreflight(ctx context.Context, e *env, args []string) int {
	c := commands["preflight"]
	var cf cohortFlags
	com, oldPool, newPool, code, ok := catalogCommand(ctx, e, c.name, args, cf.bind)
	if !ok {
		return code
	}
	defer oldPool.Close()
	defer newPool.Close()
	rep, cohort, err := cf.check(ctx, com, oldPool, newPool)
	if err != nil {
		return fail(e, c.name, err)
	}
	if com.json {
		err = writeJSON(e.stdout, preflightJSON{Cohort: cohort, Report: rep})
	} else {
		err = writeReport(e.stdout, cohort, rep)
	}
	if err != nil {
		return fail(e, c.name, err)
	}
	if !rep.Ready {
		return exitDifferences
	}
	return exitOK
}

// check measures the gates of the move the flags describe.
func (cf *cohortFlags) check(ctx context.Context, com *common, oldPool, newPool *pgxpool.Pool) (*cutover.Report, string, error) {
	from, to, err := cf.stages()
	if err != nil {
		return nil, "", err
	}
	var cohort string
	target := cutover.Target{Old: oldPool, New: newPool, Schema: com.schema, Tables: com.tables, CopyWhole: com.copyWhole}
	if cf.cohortIsSet() {
		// The move as pgshift move would make it: the shadow-read gates
		// count the reads of the users it moves.
		if target.Move, err = cf.prepare(cf.flagFile()); err != nil {
			return nil, "", err
		}
		cohort = target.Move.Cohort.String()
	}
	if cf.file != "" {
		if target.Stages, err = cf.flagFile().FileStages(); err != nil {
			return nil, "", err
		}
	}
	rep, err := cutover.Check(ctx, target, from, to, cf.limits)
	return rep, cohort, err
}

// writeReport prints the gates as a table, then the verdict.
func writeReport(w io.Writer, cohort string, r *cutover.Report) error {
	who := "the cohort"
	if cohort != "" {
		who = cohort
	}
	fmt.Fprintf(w, "%s: %v -> %v\n", who, r.From, r.To)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range r.Gates {
		mark := "ok"
		if !g.OK {
			mark = "NOT MET"
		}
		fix := ""
		if !g.OK && g.Fix != "" {
			fix = "\tfix: " + g.Fix
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\tlimit: %s%s\n", mark, g.Name, g.Measured, g.Limit, fix)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case !r.Forward:
		fmt.Fprintln(w, "ready: a backward move (rollback) is always allowed")
		for _, b := range r.Before {
			fmt.Fprintf(w, "before moving forward again: %s\n", b)
		}
	case r.Ready:
		fmt.Fprintf(w, "ready: %d gates met\n", len(r.Gates))
	default:
		_, err := fmt.Fprintf(w, "not ready: %d of %d gates not met\n", len(r.Blocking()), len(r.Gates))
		return err
	}
	return nil
}

// moveJSON is move's --json output.
type moveJSON struct {
	Cohort string `json:"cohort"`
	File   string `json:"file"`
	Undo   bool   `json:"undo,omitempty"`
	*cutover.Report
	// Moved says the file was changed; Refused says why it was not.
	Moved   bool   `json:"moved"`
	Forced  bool   `json:"forced,omitempty"`
	Refused string `json:"refused,omitempty"`
	// Warning says the move was made but not recorded in pgshift.moves.
	Warning string `json:"warning,omitempty"`
}

// recordMove writes the move into pgshift.moves on new, connecting to new
// when the move did not (a rollback). A rollback is made when new is down,
// so a failure is a warning: the move stands, and the error says what the
// gates then cannot know.
func recordMove(ctx context.Context, com *common, newPool *pgxpool.Pool, edit *cutover.Edit, forced bool) error {
	if newPool == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		np, err := com.connect(cctx, "new", com.new, 1)
		if err != nil {
			return fmt.Errorf("the move is made but not recorded in pgshift.moves (%w); the gates learn of the period it starts from the next forward move, or run a full pgshift verify --repair before moving forward again", err)
		}
		defer np.Close()
		newPool = np
	}
	if err := cutover.RecordMove(ctx, newPool, edit, forced); err != nil {
		return fmt.Errorf("the move is made but %w; run a full pgshift verify --repair before moving forward again", err)
	}
	return nil
}

func runMove(ctx context.Context, e *env, args []string) int {
	c, fs, com := flagsFor("move", e)
	var cf cohortFlags
	cf.bind(fs)
	var force, undo bool
	fs.BoolVar(&force, "force", false, "move although a gate is not met (never past a skipped stage)")
	fs.BoolVar(&undo, "undo", false, "reverse the last move: put back the version of --flags it replaced, gated like the move back")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if cf.file == "" {
		return fail(e, c.name, errors.New("name the application's flag file with --flags FILE"))
	}
	ff := cf.flagFile()
	// Everything that refuses the move without a database comes first, so
	// nothing says "ready" about a move that cannot be made.
	var edit *cutover.Edit
	var err error
	if undo {
		if cf.cohortIsSet() || cf.to != "" {
			return fail(e, c.name, errors.New("--undo takes no cohort and no --to: it reverses the last move"))
		}
		edit, err = ff.PrepareUndo()
	} else {
		edit, err = cf.prepare(ff)
	}
	if err != nil {
		return fail(e, c.name, err)
	}
	who := edit.Cohort.String()
	out := moveJSON{Cohort: who, File: ff.Path, Undo: edit.Undo}
	if edit.From == edit.To {
		if com.json {
			out.Report = &cutover.Report{From: edit.From, To: edit.To, Ready: true}
			return writeMoveJSON(e, c.name, out, exitOK)
		}
		fmt.Fprintf(e.stdout, "%s is already in %v; nothing to move\n", who, edit.To)
		return exitOK
	}
	// A rollback needs no database: it must work when one is down. Nor does
	// a skip, which is refused whatever the databases hold.
	var target cutover.Target
	var newPool *pgxpool.Pool
	if edit.To == edit.From+1 {
		oldPool, np, err := com.connectBoth(ctx)
		if err != nil {
			return fail(e, c.name, err)
		}
		defer oldPool.Close()
		defer np.Close()
		newPool = np
		stages, err := flags.FlagStages(ff.Path, edit.Before(), cf.flag)
		if err != nil {
			return fail(e, c.name, err)
		}
		target = cutover.Target{Old: oldPool, New: newPool, Schema: com.schema, Tables: com.tables, CopyWhole: com.copyWhole, Stages: stages, Move: edit}
	}
	rep, err := cutover.Check(ctx, target, edit.From, edit.To, cf.limits)
	if err != nil {
		return fail(e, c.name, err)
	}
	out.Report = rep
	if !com.json {
		if err := writeReport(e.stdout, who, rep); err != nil {
			return fail(e, c.name, err)
		}
	}
	if !rep.Ready {
		skipped := rep.Forward && rep.To != rep.From+1
		if !force || skipped {
			how := "run what each fix says, or move anyway with --force"
			if skipped {
				how = fmt.Sprintf("move to %v first; --force never skips a stage", rep.From+1)
			}
			out.Refused = fmt.Sprintf("%s (%s)", blocking(rep), how)
			if com.json {
				return writeMoveJSON(e, c.name, out, exitDifferences)
			}
			fmt.Fprintf(e.stderr, "pgshift move: refused: %s; the flag file is unchanged\n", out.Refused)
			return exitDifferences
		}
		out.Forced = true
		fmt.Fprintf(e.stderr, "pgshift move: moving although %s (--force)\n", blocking(rep))
	}
	if err := edit.Apply(); err != nil {
		return fail(e, c.name, err)
	}
	out.Moved = true
	if err := recordMove(ctx, com, newPool, edit, out.Forced); err != nil {
		out.Warning = err.Error()
		fmt.Fprintf(e.stderr, "pgshift move: warning: %v\n", err)
	}
	if com.json {
		return writeMoveJSON(e, c.name, out, exitOK)
	}
	if edit.Undo {
		fmt.Fprintf(e.stdout, "undid the last move: %s from %v back to %v in %s\n", who, rep.From, rep.To, ff.Path)
		return exitOK
	}
	fmt.Fprintf(e.stdout, "moved %s from %v to %v in %s (undo: pgshift move --flags %s --undo)\n", who, rep.From, rep.To, ff.Path, ff.Path)
	return exitOK
}

func writeMoveJSON(e *env, name string, out moveJSON, code int) int {
	if err := writeJSON(e.stdout, out); err != nil {
		return fail(e, name, err)
	}
	return code
}

// prepare works out the move the flags name, refusing what cannot be done.
func (cf *cohortFlags) prepare(ff cutover.FlagFile) (*cutover.Edit, error) {
	if !cf.cohortIsSet() {
		return nil, errors.New("name the cohort to move: --keys, --percent with --from, --rule or --default")
	}
	cohort, err := cf.cohort()
	if err != nil {
		return nil, err
	}
	if cf.to == "" {
		return nil, errors.New("name the stage to move to with --to (" + stageList() + ")")
	}
	to, err := flags.ParseStage(cf.to)
	if err != nil {
		return nil, fmt.Errorf("--to: %w", err)
	}
	return ff.Prepare(cohort, to)
}

// blocking names the gates a report has not met.
func blocking(r *cutover.Report) string {
	var names []string
	for _, g := range r.Blocking() {
		names = append(names, fmt.Sprintf("%s (%s; limit %s)", g.Name, g.Measured, g.Limit))
	}
	return "gate not met: " + strings.Join(names, ", ")
}
