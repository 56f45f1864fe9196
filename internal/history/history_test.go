package history_test

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pgshift/pgshift/internal/history"
	"github.com/pgshift/pgshift/internal/pgtest"
)

var (
	seedFlag     = flag.Int64("seed", 0, "replay the history of this seed only (and shrink it if it fails)")
	templateFlag = flag.String("template", "", "run only the template of this name (TestTemplates)")
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The environment the checker reads.
const (
	// EnvDuration runs TestHistories until the duration ends (long mode).
	envDuration = "PGSHIFT_HISTORY_DURATION"
	// EnvCount is the number of histories in short mode.
	envCount = "PGSHIFT_HISTORY_COUNT"
	// EnvFirstSeed is the first seed.
	envFirstSeed = "PGSHIFT_HISTORY_SEED"
	// EnvDisable lists fault classes, modes and kinds to turn off.
	envDisable = "PGSHIFT_HISTORY_DISABLE"
	// EnvParallel is how many histories run at once.
	envParallel = "PGSHIFT_HISTORY_PARALLEL"
	// EnvReplays is how many times -seed replays a history until it fails.
	envReplays = "PGSHIFT_HISTORY_REPLAYS"
	// EnvShrink is how many replays a failing history's shrink may use.
	envShrink = "PGSHIFT_HISTORY_SHRINK"
)

// envRun asks an ordinary go test run for the short mode's histories
// (80, 20 under -race) instead of the few every go test runs.
const envRun = "PGSHIFT_HISTORY"

// everyRun is how many histories an ordinary go test runs (seeds 1 on,
// PGSHIFT_HISTORY_SEED to start elsewhere): enough to catch a regression
// of the write path most runs, few enough for CI.
const everyRun = 6

// progressEvery is how often a long run logs its count.
const progressEvery = 5 * time.Minute

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: want an integer", name, v)
	}
	return n
}

func newEnv(t *testing.T) *history.Env {
	t.Helper()
	oldServer, newServer := pgtest.Servers(t)
	env, err := history.NewEnv(context.Background(), oldServer, newServer)
	if err != nil {
		t.Fatal(err)
	}
	env.ChildCommand = func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHistoryChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envChild+"=1")
		// Never outlives this test, and a Ctrl-C at the terminal reaches
		// this process alone (it stops a long run; the children finish).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		return cmd
	}
	t.Cleanup(func() { _ = env.Close(context.Background()) })
	return env
}

func config(t *testing.T) history.Config {
	cfg := history.DefaultConfig()
	if err := cfg.Disable(os.Getenv(envDisable)); err != nil {
		t.Fatalf("%s: %v", envDisable, err)
	}
	return cfg
}

// failure is one failing history.
type failure struct {
	h    history.History
	vs   []history.Violation
	recs []history.Record
	log  []string // the facades' log of the failing run
}

// keep writes what f's run did (the history, its violations, every write's
// outcome and times, the facades' debug log) to a file in the temporary
// directory, at once: a long run may be stopped before its report.
func keep(f failure) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nviolations:\n", f.h)
	for _, v := range f.vs {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	recs := slices.Clone(f.recs)
	slices.SortFunc(recs, func(a, b history.Record) int { return cmp.Compare(a.Op.ID, b.Op.ID) })
	b.WriteString("writes:\n")
	for _, rec := range recs {
		fmt.Fprintf(&b, "  #%d %s %v..%v settled %v stages %v/%v %s\n", rec.Op.ID, rec.Outcome, rec.Start.Round(time.Microsecond),
			rec.End.Round(time.Microsecond), rec.Settled.Round(time.Microsecond), rec.Stage[0], rec.Stage[1], rec.Err)
	}
	b.WriteString("the facades' log (debug level, times since the traffic began):\n")
	b.WriteString(strings.Join(f.log, "\n") + "\n")
	path := filepath.Join(os.TempDir(), fmt.Sprintf("pgshift-history-%s.log", strings.ReplaceAll(name(f.h), " ", "-")))
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// envChild marks the test binary run as a history's child process.
const envChild = "PGSHIFT_HISTORY_CHILD"

// TestHistoryChild is the child half of the histories that run a writer in
// a process of its own (history.ServeChild), which the history SIGKILLs;
// in an ordinary run it does nothing.
func TestHistoryChild(t *testing.T) {
	if os.Getenv(envChild) == "" {
		return
	}
	if err := history.ServeChild(context.Background(), os.Stdin, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
}

// TestHistories runs randomized histories (see the package documentation)
// and fails with each failing seed, its violations, and a shrunk history of
// the first failure of each rule.
func TestHistories(t *testing.T) {
	t.Parallel()
	cfg := config(t)
	env := newEnv(t)
	ctx := context.Background()
	if *seedFlag != 0 {
		// A concurrent history need not fail on every replay: run it up to
		// PGSHIFT_HISTORY_REPLAYS times (3) until it does.
		h := history.Generate(*seedFlag, cfg)
		for i := range envInt(t, envReplays, 3) {
			run, err := env.Run(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			vs := history.Judge(run)
			t.Logf("seed %d, replay %d, ran in %v: %d writes, %d violations", *seedFlag, i+1, run.Elapsed.Round(time.Millisecond), len(run.Records), len(vs))
			if len(vs) > 0 {
				t.Error(report(env, failure{h, vs, run.Records, run.Log}, envInt(t, envShrink, 30)))
				return
			}
		}
		return
	}
	first := int64(envInt(t, envFirstSeed, 1))
	defaultCount := everyRun
	switch {
	case os.Getenv(envRun) == "":
	case raceDetector:
		defaultCount = 20
	default:
		defaultCount = 80
	}
	count := envInt(t, envCount, defaultCount)
	var deadline time.Time
	// Stopped ends a long run early: the histories running finish, and the
	// summary counts them.
	stopped := context.Background()
	if d := os.Getenv(envDuration); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("%s=%q: %v", envDuration, d, err)
		}
		deadline, count = time.Now().Add(dur), 1<<62
		var stop context.CancelFunc
		stopped, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	defaultParallel := 6
	if os.Getenv(envRun) == "" && os.Getenv(envDuration) == "" {
		defaultParallel = 2 // beside the rest of go test ./...
	}
	parallel := envInt(t, envParallel, defaultParallel)
	var next atomic.Int64
	next.Store(first)
	var mu sync.Mutex
	var failures []failure
	var ran atomic.Int64
	// What the operator tools did beside the writers, over all histories.
	var backfills, backfilled, verifies, verified, kills, cut atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	// A long run says how far it got, so that a run cut short (the machine
	// lost) still has a count.
	done := make(chan struct{})
	if !deadline.IsZero() {
		go func() {
			tick := time.NewTicker(progressEvery)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-stopped.Done():
					t.Logf("stopping: the %d histories running finish, then the summary", parallel)
					return
				case <-tick.C:
					mu.Lock()
					nf := len(failures)
					mu.Unlock()
					t.Logf("so far: %d histories in %v, %d failed (seeds from %d)", ran.Load(), time.Since(start).Round(time.Second), nf, first)
				}
			}
		}()
	}
	for range parallel {
		wg.Go(func() {
			for {
				if stopped.Err() != nil {
					return
				}
				seed := next.Add(1) - 1
				if seed >= first+int64(count) || (!deadline.IsZero() && time.Now().After(deadline)) {
					return
				}
				h := history.Generate(seed, cfg)
				run, err := env.Run(ctx, h)
				if err != nil {
					t.Errorf("seed %d: %v", seed, err)
					return
				}
				ran.Add(1)
				for _, c := range h.Control {
					switch c.Kind {
					case history.Backfill:
						backfills.Add(1)
					case history.Verify:
						verifies.Add(1)
					}
				}
				if run.Tools.Killed {
					kills.Add(1)
				}
				cut.Add(int64(run.Tools.KilledWrites))
				backfilled.Add(run.Tools.Backfilled)
				verified.Add(int64(run.Tools.Verified))
				if vs := history.Judge(run); len(vs) > 0 {
					f := failure{h, vs, run.Records, run.Log}
					kept := "its run is kept in "
					path, err := keep(f)
					if err != nil {
						kept = "cannot keep its run: "
						path = err.Error()
					}
					t.Logf("seed %d failed (%s), after %d histories in %v: %.300s; %s%s", seed, vs[0].Rule, ran.Load(),
						time.Since(start).Round(time.Second), vs[0], kept, path)
					mu.Lock()
					failures = append(failures, f)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(done)
	n := ran.Load()
	t.Logf("%d histories (seeds %d..%d) in %v, %d failed", n, first, first+n-1, time.Since(start).Round(time.Second), len(failures))
	t.Logf("beside the writers: %d backfills inserted %d rows into new; %d verify --repair runs entered %d differences in the repair log; "+
		"%d child processes SIGKILLed while they ran, %d of their writes cut short",
		backfills.Load(), backfilled.Load(), verifies.Load(), verified.Load(), kills.Load(), cut.Load())
	slices.SortFunc(failures, func(a, b failure) int { return cmp.Compare(a.h.Seed, b.h.Seed) })
	perRule := map[string]int{}
	for _, f := range failures {
		seen := map[string]bool{}
		for _, v := range f.vs {
			if !seen[v.Rule] {
				seen[v.Rule] = true
				perRule[v.Rule]++
			}
		}
	}
	for _, rule := range slices.Sorted(maps.Keys(perRule)) {
		t.Logf("%d histories broke %s", perRule[rule], rule)
	}
	// One line per failing seed, then the first failure of each rule in
	// full, shrunk (the shrinks run at once).
	var firsts []failure
	reported := map[string]bool{}
	for _, f := range failures {
		var names []string
		for _, v := range f.vs {
			if !slices.Contains(names, v.Rule) {
				names = append(names, v.Rule)
			}
		}
		t.Errorf("seed %d broke %s: %.300s (replay: %s)", f.h.Seed, strings.Join(names, ", "), f.vs[0], replay(f.h))
		if !reported[f.vs[0].Rule] {
			reported[f.vs[0].Rule] = true
			firsts = append(firsts, f)
		}
	}
	reports := make([]string, len(firsts))
	var rwg sync.WaitGroup
	for i, f := range firsts {
		rwg.Go(func() { reports[i] = report(env, f, envInt(t, envShrink, 8)) })
	}
	rwg.Wait()
	for _, r := range reports {
		t.Error(r)
	}
}

// report describes a failing history's violations and a shrunk history
// that still breaks its first rule.
func report(env *history.Env, f failure, tries int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s violations:\n", name(f.h))
	for i, v := range f.vs {
		if i == 10 {
			fmt.Fprintf(&b, "  ... and %d more\n", len(f.vs)-10)
			break
		}
		fmt.Fprintf(&b, "  %s\n", v)
	}
	if path, err := keep(f); err != nil {
		fmt.Fprintf(&b, "cannot keep the failing run: %v\n", err)
	} else {
		fmt.Fprintf(&b, "the failing run (its writes' outcomes and times, the facades' debug log): %s\n", path)
	}
	rule := f.vs[0].Rule
	small, vs, used := env.Shrink(context.Background(), f.h, f.vs[0], tries)
	if len(small.Ops) < len(f.h.Ops) || len(small.Control) < len(f.h.Control) {
		fmt.Fprintf(&b, "a smaller history that broke %s (%d of %d writes, found in %d replays):\n%s", rule, len(small.Ops), len(f.h.Ops), used, small)
	} else {
		fmt.Fprintf(&b, "no smaller history broke %s in %d replays; the history:\n%s", rule, used, small)
	}
	for _, v := range vs {
		if v.Rule == rule {
			fmt.Fprintf(&b, "  which broke: %s\n", v)
			break
		}
	}
	fmt.Fprintf(&b, "replay: %s\n", replay(f.h))
	return b.String()
}

// replay is the command that replays h.
func replay(h history.History) string {
	if h.Name != "" {
		return fmt.Sprintf("go test ./internal/history -run 'TestTemplates$' -template %s", h.Name)
	}
	cmd := fmt.Sprintf("go test ./internal/history -run 'TestHistories$' -seed %d", h.Seed)
	if d := os.Getenv(envDisable); d != "" {
		cmd = envDisable + "=" + d + " " + cmd
	}
	return cmd
}

func name(h history.History) string {
	if h.Name != "" {
		return "template " + h.Name
	}
	return fmt.Sprintf("seed %d", h.Seed)
}

// TestTemplates runs the hand-written history of each proven case of
// issues 18 and 24 and fails with the violations of each that breaks a rule.
func TestTemplates(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	for _, tpl := range history.Templates() {
		if *templateFlag != "" && tpl.History.Name != *templateFlag {
			continue
		}
		t.Run(tpl.History.Name, func(t *testing.T) {
			t.Parallel()
			run, err := env.Run(context.Background(), tpl.History)
			if err != nil {
				t.Fatal(err)
			}
			vs := history.Judge(run)
			if len(vs) == 0 {
				for _, rec := range run.Records {
					t.Logf("write #%d %s %v..%v stages %v/%v %s", rec.Op.ID, rec.Outcome, rec.Start.Round(time.Millisecond),
						rec.End.Round(time.Millisecond), rec.Stage[0], rec.Stage[1], rec.Err)
				}
				return
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%s broke the rules:\n", tpl.Case)
			for _, v := range vs {
				fmt.Fprintf(&b, "  %s\n", v)
			}
			fmt.Fprintf(&b, "%sreplay: go test ./internal/history -run 'TestTemplates$' -template %s\n", tpl.History, tpl.History.Name)
			for _, rec := range run.Records {
				fmt.Fprintf(&b, "  write #%d %s %v..%v stages %v/%v %s\n", rec.Op.ID, rec.Outcome, rec.Start.Round(time.Millisecond),
					rec.End.Round(time.Millisecond), rec.Stage[0], rec.Stage[1], rec.Err)
			}
			t.Error(b.String())
		})
	}
}
