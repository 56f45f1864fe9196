package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
	"github.com/pgshift/pgshift/internal/sequences"
)

// walkOptions tune a walkthrough.
type walkOptions struct {
	// Step is how long the synthetic load runs in each step.
	Step time.Duration
	// Accounts is the number of simulated users; Workers how many of them
	// make requests at once.
	Accounts, Workers int
	// Addr is where the application listens (its dashboard can be watched
	// during the run); a free loopback port when empty.
	Addr   string
	Logger *slog.Logger
}

// step is one step of the migration.
type step struct {
	name, what string
	// moves are the cohort moves of this step, made in the flag file as
	// `pgshift move` makes them: gates first.
	moves []move
	// fix runs when a move is refused (a gate not met), before the move is
	// tried once more.
	fix func(ctx context.Context, a *app) (label, line string, err error)
	// expect is the stage each account must be in once the file is loaded.
	expect func(account) flags.Stage
	// during runs while the load runs (backfill); after runs once the load
	// stopped (verify --repair, sync-sequences). Each returns a report line.
	during, after func(ctx context.Context, a *app) (label, line string, err error)
	// verify compares the two databases at the end of the step: only
	// meaningful while both sides are written.
	verify bool
}

// Flag rules of the walkthrough's cohorts.
var (
	ruleTesters = map[string]any{"in": []any{map[string]any{"var": "targetingKey"}, []any{"123", "456"}}}
	rulePro     = map[string]any{"and": []any{
		map[string]any{"in": []any{map[string]any{"var": "country"}, []any{"IN", "US"}}},
		map[string]any{"==": []any{map[string]any{"var": "plan"}, "pro"}},
	}}
)

func isTester(a account) bool { return a.Key == "123" || a.Key == "456" }
func isPro(a account) bool    { return (a.Country == "IN" || a.Country == "US") && a.Plan == "pro" }

// flagFileFor renders a flagd file: accounts matching any of liveRules are
// live, everyone else is in stage def.
func flagFileFor(def flags.Stage, liveRules ...map[string]any) []byte {
	variants := map[string]string{}
	for _, s := range flags.AllStages() {
		variants[s.String()] = s.String()
	}
	f := map[string]any{
		"state":          "ENABLED",
		"variants":       variants,
		"defaultVariant": def.String(),
	}
	if len(liveRules) > 0 {
		var rules []any
		for _, r := range liveRules {
			rules = append(rules, r)
		}
		f["targeting"] = map[string]any{"if": []any{map[string]any{"or": rules}, "live"}}
	}
	b, err := json.MarshalIndent(map[string]any{"flags": map[string]any{"pgshift-stage": f}}, "", "  ")
	if err != nil {
		panic(err) // static data
	}
	return b
}

func everyone(s flags.Stage) func(account) flags.Stage {
	return func(account) flags.Stage { return s }
}

// move is one cohort's move to a stage.
type move struct {
	cohort cutover.Cohort
	to     flags.Stage
}

// who names the move's cohort for the report.
func (m move) who() string {
	switch {
	case m.cohort.Rule > 0:
		return fmt.Sprintf("IN/US pro users (rule %d)", m.cohort.Rule)
	case m.cohort.Default:
		return "everyone else (the default)"
	}
	return "testers " + strings.Join(m.cohort.Keys, ", ")
}

// The walkthrough's cohorts in its flag file. The pro users are the first
// rule of the initial file, and the second once the testers have a rule of
// their own (a move of routing keys puts theirs first).
var (
	testerKeys = cutover.Cohort{Keys: []string{"123", "456"}}
	proFirst   = cutover.Cohort{Rule: 1}
	proSecond  = cutover.Cohort{Rule: 2}
	others     = cutover.Cohort{Default: true}
)

// walkLimits are the gates' limits in the walkthrough: those of dbs, but for
// the shadow reads a short run can gather before live.
func walkLimits(dbs *databases) cutover.Limits {
	l := dbs.gateLimits()
	l.MinShadowReads = 20
	return l
}

// initialFlags is the flag file the walkthrough starts from: the IN/US pro
// users in a rule of their own, everyone off.
func initialFlags() []byte {
	variants := map[string]string{}
	for _, s := range flags.AllStages() {
		variants[s.String()] = s.String()
	}
	b, err := json.MarshalIndent(map[string]any{"flags": map[string]any{"pgshift-stage": map[string]any{
		"state": "ENABLED", "variants": variants, "defaultVariant": "off",
		"targeting": map[string]any{"if": []any{rulePro, "off", "off"}},
	}}}, "", "  ")
	if err != nil {
		panic(err) // static data
	}
	return b
}

// byCohort is the stage of each account once testers, the pro users and
// everyone else are in the stages given.
func byCohort(tester, pro, other flags.Stage) func(account) flags.Stage {
	return func(a account) flags.Stage {
		switch {
		case isTester(a):
			return tester
		case isPro(a):
			return pro
		}
		return other
	}
}

func steps() []step {
	keep := func(s flags.Stage) func(account) flags.Stage { return everyone(s) }
	all := func(to flags.Stage) []move {
		return []move{{testerKeys, to}, {proSecond, to}, {others, to}}
	}
	return []step{
		{name: "off", what: "the application before the migration: old only",
			expect: everyone(flags.StageOff)},
		{name: "dualwrite", what: "every write goes to old, then new; new lacks the older rows",
			moves:  []move{{proFirst, flags.StageDualWrite}, {others, flags.StageDualWrite}},
			expect: everyone(flags.StageDualWrite)},
		{name: "backfill", what: "copy the rows new lacks, under load",
			expect: keep(flags.StageDualWrite), during: stepBackfill},
		{name: "shadow", what: "reads served by old and compared with new, once verify proves both sides equal",
			moves: []move{{proFirst, flags.StageShadow}, {others, flags.StageShadow}}, fix: stepVerifyRepair,
			expect: everyone(flags.StageShadow), verify: true},
		{name: "live: testers", what: "testers 123 and 456 read from new; everyone else in shadow",
			moves:  []move{{testerKeys, flags.StageLive}},
			expect: byCohort(flags.StageLive, flags.StageShadow, flags.StageShadow), verify: true},
		{name: "live: pro users", what: "and the IN/US pro users",
			moves:  []move{{proSecond, flags.StageLive}},
			expect: byCohort(flags.StageLive, flags.StageLive, flags.StageShadow), verify: true},
		{name: "live: everyone", what: "new answers everyone; old still written and compared",
			moves: []move{{others, flags.StageLive}}, expect: everyone(flags.StageLive), verify: true},
		{name: "rampdown", what: "new answers; old still written, no longer compared",
			moves: all(flags.StageRampdown), expect: everyone(flags.StageRampdown), verify: true},
		{name: "complete", what: "new only; old is no longer written",
			moves: all(flags.StageComplete), expect: everyone(flags.StageComplete)},
	}
}

// moveCohorts makes the step's moves as `pgshift move` does: the gates of
// each move first, those into live counting the moved cohort's own shadow
// reads. A move refused for too few of them keeps the cohort in shadow
// longer, with reads of its own; a move refused otherwise runs the step's
// fix once, then is tried again; refused again, the walkthrough stops. It
// returns a report line per refusal, fix and move.
func moveCohorts(ctx context.Context, a *app, s step) ([][2]string, error) {
	ff := cutover.FlagFile{Path: a.flagsPath}
	target := cutover.Target{Old: a.old, New: a.new, Schema: "public"}
	var lines [][2]string
	fixed := false
	for _, m := range s.moves {
		edit, err := ff.Prepare(m.cohort, m.to)
		if err != nil {
			return lines, err
		}
		from := edit.From
		if target.Stages, err = ff.FileStages(); err != nil {
			return lines, err
		}
		target.Move = edit
		rep, err := cutover.Check(ctx, target, from, m.to, a.limits)
		if err != nil {
			return lines, err
		}
		if !rep.Ready && onlyTooFewShadowReads(rep) {
			line, err := readMore(ctx, a, edit, target)
			if err != nil {
				return lines, err
			}
			lines = append(lines, [2]string{"shadow", m.who() + ": " + line})
			if rep, err = cutover.Check(ctx, target, from, m.to, a.limits); err != nil {
				return lines, err
			}
		}
		if !rep.Ready {
			lines = append(lines, [2]string{"move", fmt.Sprintf("%s %v -> %v refused: %s", m.who(), from, m.to, notMet(rep))})
			if s.fix == nil || fixed {
				return lines, fmt.Errorf("moving %s to %v: %s", m.cohort, m.to, notMet(rep))
			}
			label, line, err := s.fix(ctx, a)
			if err != nil {
				return lines, err
			}
			fixed = true
			lines = append(lines, [2]string{label, line})
			if rep, err = cutover.Check(ctx, target, from, m.to, a.limits); err != nil {
				return lines, err
			}
			if !rep.Ready {
				return lines, fmt.Errorf("moving %s to %v after %s: %s", m.cohort, m.to, line, notMet(rep))
			}
		}
		if err := edit.Apply(); err != nil {
			return lines, err
		}
		line := fmt.Sprintf("%s %v -> %v: %d gates met", m.who(), from, m.to, len(rep.Gates))
		for _, g := range rep.Gates {
			if g.Name == "shadow reads" {
				line += "; shadow reads " + g.Measured
			}
		}
		lines = append(lines, [2]string{"move", line})
	}
	return lines, nil
}

// onlyTooFewShadowReads says the one gate a report has not met is the
// count of the cohort's shadow reads.
func onlyTooFewShadowReads(r *cutover.Report) bool {
	b := r.Blocking()
	return len(b) == 1 && b[0].Name == "shadow reads"
}

// readMore keeps the cohort edit moves in shadow longer, with traffic: its
// accounts read their own rows until the gate of the move counts enough of
// their shadow reads (a minute at most). It says how many reads it made.
func readMore(ctx context.Context, a *app, edit *cutover.Edit, target cutover.Target) (string, error) {
	moves, err := edit.MovesUser()
	if err != nil {
		return "", err
	}
	var cohort []account
	for _, acc := range a.accounts {
		in, err := moves(acc.Key, acc.attrs())
		if err != nil {
			return "", err
		}
		if in {
			cohort = append(cohort, acc)
		}
	}
	if len(cohort) == 0 {
		return "", fmt.Errorf("moving %s: none of the walkthrough's accounts is in the cohort", edit.Cohort)
	}
	made := 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		for range a.limits.MinShadowReads/int64(len(cohort)) + 1 {
			for _, acc := range cohort {
				if _, err := a.store.Users.Get(flags.WithUser(ctx, acc.Key, acc.attrs()), acc.UserID); err != nil {
					return "", fmt.Errorf("read as %s: %w", acc.Key, err)
				}
				made++
			}
		}
		a.facade.Wait()
		rep, err := cutover.Check(ctx, target, edit.From, edit.To, a.limits)
		if err != nil {
			return "", err
		}
		if rep.Ready || !onlyTooFewShadowReads(rep) {
			break
		}
	}
	return fmt.Sprintf("kept in shadow longer: %d more reads of their own (the gate into live counts only the cohort's)", made), nil
}

// notMet names the gates a report has not met, with their measures.
func notMet(r *cutover.Report) string {
	var parts []string
	for _, g := range r.Blocking() {
		parts = append(parts, fmt.Sprintf("%s: %s (limit %s; fix: %s)", g.Name, g.Measured, g.Limit, g.Fix))
	}
	return strings.Join(parts, "; ")
}

func stepBackfill(ctx context.Context, a *app) (string, string, error) {
	rep, err := a.backfill(ctx)
	if err != nil {
		return "", "", err
	}
	return "backfill", fmt.Sprintf("%d tables, %d rows read from old, %d inserted into new", len(rep.Tables), rep.Rows, rep.Inserted), nil
}

func stepVerifyRepair(ctx context.Context, a *app) (string, string, error) {
	rep, err := a.verify(ctx, true, 100*time.Millisecond)
	if err != nil {
		return "", "", err
	}
	moved, err := a.syncSequences(ctx)
	if err != nil {
		return "", "", err
	}
	return "operator", fmt.Sprintf("verify --repair: %s; sync-sequences: %d moved %d past old", rep.summary(), moved, sequences.DefaultGap), nil
}

// walkthrough is `go run ./demo walkthrough`.
func walkthrough(ctx context.Context, args []string, e env) (bool, error) {
	fs := flag.NewFlagSet("demo walkthrough", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var o walkOptions
	fs.DurationVar(&o.Step, "duration", 3*time.Second, "how long the load runs in each step")
	short := fs.Bool("short", false, "a quick run (-duration 300ms, 24 users): what CI runs")
	fs.IntVar(&o.Accounts, "users", 120, "number of simulated users")
	fs.IntVar(&o.Workers, "workers", 16, "simulated users making requests at once")
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:0", "where the application listens during the run")
	verbose := fs.Bool("v", false, "log at info level")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if *short {
		o.Step, o.Accounts, o.Workers = 300*time.Millisecond, 24, 6
	}
	// The report says what the warnings would (repairs postponed until
	// backfill, ...); errors still show.
	o.Logger = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if *verbose {
		o.Logger = newLogger(e.stderr, true)
	}
	dbs, err := openDatabases(ctx, e, o.Logger)
	if err != nil {
		return false, err
	}
	defer dbs.close()
	for _, p := range []*pgxpool.Pool{dbs.old, dbs.new} {
		var n int
		if err := p.QueryRow(ctx, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").Scan(&n); err != nil {
			return false, err
		}
		if n > 0 && len(dbs.servers) == 0 {
			return false, fmt.Errorf("the walkthrough needs two empty databases; %s has tables", where(p.Config().ConnString()))
		}
	}
	return runWalkthrough(ctx, dbs, o, e.stdout)
}

// runWalkthrough migrates the seeded application from old to new under
// load, step by step, and reports each step to out. It returns true when
// no request failed and the final verify found both sides equal.
func runWalkthrough(ctx context.Context, dbs *databases, o walkOptions, out io.Writer) (bool, error) {
	accounts := makeAccounts(o.Accounts)
	if err := dbs.prepare(ctx, accounts, false); err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp("", "pgshift-walkthrough-")
	if err != nil {
		return false, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	flagsPath := filepath.Join(dir, "flags.json")
	all := steps()
	if err := writeFileAtomic(flagsPath, initialFlags()); err != nil {
		return false, err
	}
	a, err := newApp(ctx, appConfig{
		Old: dbs.old, New: dbs.new, FlagsPath: flagsPath, Accounts: accounts,
		Logger: o.Logger, RepairInterval: 100 * time.Millisecond, Strict: true, Limits: walkLimits(dbs),
	})
	if err != nil {
		return false, err
	}
	defer a.close()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.Addr)
	if err != nil {
		return false, fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	srv := newServer(a.handler())
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	base := "http://" + ln.Addr().String()

	fmt.Fprintf(out, "pgshift walkthrough: %d simulated users (%d at once), %s of load per step\n", len(accounts), o.Workers, o.Step)
	fmt.Fprintf(out, "old %s, new %s; flag file %s\n", dbs.describe(flags.SideOld), dbs.describe(flags.SideNew), flagsPath)
	fmt.Fprintf(out, "watch it: %s/\n", base)

	l := newLoad(base, accounts, o.Workers)
	var final *verifyReport
	for i, s := range all {
		if ctx.Err() != nil {
			return false, errStopped
		}
		fmt.Fprintf(out, "\n[%d/%d] %s: %s\n", i+1, len(all), s.name, s.what)
		rep, err := runStep(ctx, a, l, s, o.Step)
		if err != nil {
			return false, fmt.Errorf("step %s: %w", s.name, err)
		}
		rep.print(out)
		if rep.verify != nil {
			final = rep.verify
		}
	}

	failed := l.failures.Load()
	fmt.Fprintf(out, "\nresult: %d requests, %d failed; final verify (rampdown, the last step that writes both): ", l.requests.Load(), failed)
	ok := failed == 0 && final != nil && final.Equal
	if final != nil {
		fmt.Fprintln(out, final.summary())
	} else {
		fmt.Fprintln(out, "not run")
	}
	for _, f := range l.firstFailures() {
		fmt.Fprintf(out, "  failed: %s\n", f)
	}
	if ok {
		fmt.Fprintln(out, "PASS: every request succeeded and both databases were equal before old was retired")
	} else {
		fmt.Fprintln(out, "FAIL")
	}
	return ok, nil
}

// stepReport is what one step did.
type stepReport struct {
	stages             map[string]int
	requests, failures int64
	byOld, byNew       int64
	shadowReads        int64
	mismatches         int64
	missed, repaired   int64
	backlog            dualwrite.Backlog
	drainFailed        int
	moves              [][2]string // label, line: the step's moves, refusals and fixes
	extra              [][2]string // label, line
	verify             *verifyReport
}

func (r stepReport) print(w io.Writer) {
	var names []string
	for s := range r.stages {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool {
		a, _ := flags.ParseStage(names[i])
		b, _ := flags.ParseStage(names[j])
		return a < b
	})
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, r.stages[n]))
	}
	for _, m := range r.moves {
		fmt.Fprintf(w, "    %-9s %s\n", m[0], m[1])
	}
	fmt.Fprintf(w, "    users     %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "    requests  %d, %d failed; answered by old %d, new %d\n", r.requests, r.failures, r.byOld, r.byNew)
	fmt.Fprintf(w, "    shadow    %d reads compared, %d mismatches\n", r.shadowReads, r.mismatches)
	fmt.Fprintf(w, "    repair    %d writes left to repair, %d rows repaired; backlog old %d, new %d", r.missed, r.repaired, r.backlog.Old.Entries, r.backlog.New.Entries)
	if r.drainFailed > 0 {
		fmt.Fprintf(w, " (%d could not be repaired yet)", r.drainFailed)
	}
	fmt.Fprintln(w)
	for _, e := range r.extra {
		fmt.Fprintf(w, "    %-9s %s\n", e[0], e[1])
	}
	switch {
	case r.verify != nil:
		fmt.Fprintf(w, "    verify    %s\n", r.verify.summary())
	default:
		fmt.Fprintf(w, "    verify    - (%s)\n", "both sides are not both written")
	}
}

// runStep moves the flags, runs the load (and the step's operator work)
// for d, stops the load, settles the repair log and verifies.
func runStep(ctx context.Context, a *app, l *load, s step, d time.Duration) (stepReport, error) {
	var rep stepReport
	lines, err := moveCohorts(ctx, a, s)
	rep.moves = lines
	if err != nil {
		return rep, err
	}
	if err := waitForStages(ctx, a, s.expect); err != nil {
		return rep, err
	}
	rep.stages = map[string]int{}
	for _, acc := range a.accountStages(ctx) {
		rep.stages[acc.Stage]++
	}
	act0, st0, req0, fail0 := a.activity.snapshot(), a.facade.Stats(), l.requests.Load(), l.failures.Load()

	stop := l.start()
	deadline := time.Now().Add(d)
	if s.during != nil {
		label, line, err := s.during(ctx, a)
		if err != nil {
			stop()
			return rep, err
		}
		rep.extra = append(rep.extra, [2]string{label, line})
	}
	select {
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
	}
	stop()
	if ctx.Err() != nil {
		return rep, errStopped
	}
	if s.after != nil {
		label, line, err := s.after(ctx, a)
		if err != nil {
			return rep, err
		}
		rep.extra = append(rep.extra, [2]string{label, line})
	}

	// Let writes' other sides and shadow reads finish, then settle the
	// repair logs now rather than at the worker's pace.
	a.facade.Wait()
	drain, err := a.facade.Repairer().Drain(ctx)
	if err != nil {
		return rep, fmt.Errorf("repair: %w", err)
	}
	rep.drainFailed = drain.Postponed
	if rep.backlog, err = a.facade.Repairer().Backlog(ctx); err != nil {
		return rep, err
	}

	act, st := a.activity.snapshot(), a.facade.Stats()
	rep.requests, rep.failures = l.requests.Load()-req0, l.failures.Load()-fail0
	rep.byOld = act.servedBy(flags.SideOld) - act0.servedBy(flags.SideOld)
	rep.byNew = act.servedBy(flags.SideNew) - act0.servedBy(flags.SideNew)
	rep.shadowReads = st.ShadowReads - st0.ShadowReads
	rep.mismatches = st.ShadowMismatches - st0.ShadowMismatches
	rep.missed = st.OtherMissed - st0.OtherMissed
	rep.repaired = st.Repaired - st0.Repaired
	if s.verify {
		v, err := a.verify(ctx, false, 100*time.Millisecond)
		if err != nil {
			return rep, err
		}
		rep.verify = &v
	}
	return rep, nil
}

// waitForStages waits until the flags put every account where the step
// expects it: the file watcher has read the new file.
func waitForStages(ctx context.Context, a *app, expect func(account) flags.Stage) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		wrong := ""
		for _, acc := range a.accounts {
			if got, want := a.stages.Stage(flags.WithUser(ctx, acc.Key, acc.attrs())), expect(acc); got != want {
				wrong = fmt.Sprintf("account %s is in %s, want %s", acc.Key, got, want)
				break
			}
		}
		if wrong == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the flag file was not applied within 10s: %s", wrong)
		}
		select {
		case <-ctx.Done():
			return errStopped
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// writeFileAtomic replaces path with data in one rename, as editors do, so
// the watcher never reads half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".flags-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
