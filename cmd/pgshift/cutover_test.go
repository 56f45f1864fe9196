package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
	"github.com/pgshift/pgshift/internal/pgtest"
)

// testerFlags: testers 123 and 456 in a rule of their own, everyone else off.
const testerFlags = `{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "pgshift-stage": {
      "state": "ENABLED",
      "variants": {"off": "off", "dualwrite": "dualwrite"},
      "defaultVariant": "off",
      "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["123", "456"]]}, "off", "off"]}
    }
  }
}
`

// A cohort walks off -> dualwrite -> shadow through the gates: each move is
// refused, naming the gate, until what the gate measures holds; a skip is
// refused even with --force; a rollback is allowed and says what to run;
// --undo puts the previous file back.
func TestPreflightAndMoveGateACohort(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	for _, db := range []*pgtest.DB{p.Old, p.New} {
		pgtest.Exec(t, db.Pool, `CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL)`)
	}
	pgtest.Exec(t, p.Old.Pool, `INSERT INTO users (name) SELECT 'u' || i FROM generate_series(1, 50) AS i`)
	file := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(file, []byte(testerFlags), 0o644); err != nil {
		t.Fatal(err)
	}
	urls := []string{"--old", p.Old.URL, "--new", p.New.URL}
	testers := append([]string{"--flags", file, "--keys", "123,456", allowNonDurable}, urls...)
	stageNow := func() flags.Stage {
		t.Helper()
		s, err := cutover.FlagFile{Path: file}.Stage(cutover.Cohort{Keys: []string{"123", "456"}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mustRun := func(args ...string) string {
		t.Helper()
		code, out, errOut := pgshift(t, append(args, urls...)...)
		if code != exitOK {
			t.Fatalf("pgshift %v: code %d\n%s%s", args, code, out, errOut)
		}
		return out
	}

	// Into dualwrite: pgshift is not installed yet.
	code, out, errOut := pgshift(t, append([]string{"move", "--to", "dualwrite"}, testers...)...)
	if code != exitDifferences || !hasGate(out, "NOT MET", "pgshift installed on old") ||
		!strings.Contains(errOut, "refused: gate not met: pgshift installed on old (no; limit yes)") {
		t.Fatalf("move before install: code %d\n%s%s", code, out, errOut)
	}
	if s := stageNow(); s != flags.StageOff {
		t.Fatalf("a refused move changed the file: testers in %v", s)
	}
	// Skipping dualwrite is refused even with --force.
	code, _, errOut = pgshift(t, append([]string{"move", "--to", "shadow", "--force"}, testers...)...)
	if code != exitDifferences || !strings.Contains(errOut, "move to dualwrite first; --force never skips a stage") {
		t.Fatalf("move off -> shadow --force: code %d, %s", code, errOut)
	}
	mustRun("install")
	if code, out, _ := pgshift(t, append([]string{"preflight", "--to", "dualwrite"}, testers...)...); code != exitOK || !strings.Contains(out, "ready: 6 gates met") {
		t.Fatalf("preflight after install: code %d\n%s", code, out)
	}
	out = mustRun(append([]string{"move", "--to", "dualwrite"}, testers[:5]...)...)
	if !strings.Contains(out, "moved routing keys [123 456] from off to dualwrite") || stageNow() != flags.StageDualWrite {
		t.Fatalf("move into dualwrite: %s; testers in %v", out, stageNow())
	}

	// Into shadow: everyone else is in off, writing old only.
	code, out, _ = pgshift(t, append([]string{"preflight", "--to", "shadow"}, testers...)...)
	if code != exitDifferences || !hasGate(out, "NOT MET", "full verify since a cohort was last in off") || !strings.Contains(out, "a cohort is in off now") {
		t.Fatalf("preflight into shadow while a cohort is in off: code %d\n%s", code, out)
	}
	mustRun("move", "--flags", file, "--default", "--to", "dualwrite", allowNonDurable)
	// Nothing backfilled or verified yet.
	code, out, _ = pgshift(t, append([]string{"preflight", "--to", "shadow", "--json"}, testers...)...)
	var rep struct {
		Cohort string
		cutover.Report
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("preflight --json: %v\n%s", err, out)
	}
	notMet := map[string]string{}
	for _, g := range rep.Blocking() {
		notMet[g.Name] = g.Measured + " / " + g.Fix
	}
	if code != exitDifferences || rep.Ready || rep.From != flags.StageDualWrite || len(notMet) != 3 ||
		!strings.HasPrefix(notMet["full verify since a cohort was last in off"], "0 of 1 tables verified in full and equal since") ||
		notMet["backfill finished"] != "0 of 1 tables / pgshift backfill --table users" ||
		notMet["verify equal"] != "0 of 1 tables equal (never verified: users) / pgshift verify --repair --table users" {
		t.Fatalf("preflight into shadow before backfill: code %d, %+v", code, rep)
	}
	mustRun("backfill")
	mustRun("verify")
	out = mustRun(append([]string{"move", "--to", "shadow"}, testers[:5]...)...)
	if !hasGate(out, "ok", "verify equal") || stageNow() != flags.StageShadow {
		t.Fatalf("move into shadow: %s; testers in %v", out, stageNow())
	}

	// Into live: sequences not moved, no shadow reads recorded.
	code, out, _ = pgshift(t, append([]string{"preflight", "--to", "live"}, testers...)...)
	if code != exitDifferences || !hasGate(out, "NOT MET", "new's sequences ahead of old's") ||
		!hasGate(out, "NOT MET", "shadow reads") || !strings.Contains(out, "not ready: 2 of 6 gates not met") {
		t.Fatalf("preflight into live: code %d\n%s", code, out)
	}
	mustRun("sync-sequences")
	if code, out, _ := pgshift(t, append([]string{"preflight", "--to", "live"}, testers...)...); code != exitDifferences || !hasGate(out, "ok", "new's sequences ahead of old's") {
		t.Fatalf("preflight into live after sync-sequences: code %d\n%s", code, out)
	}

	// The rollback is allowed, needs no database and says what to run; new
	// is up here, so it is recorded.
	code, out, _ = pgshift(t, "move", "--flags", file, "--keys", "123,456", "--to", "off", "--old", "postgres://nobody@127.0.0.1:1/none", "--new", p.New.URL)
	if code != exitOK || stageNow() != flags.StageOff || !strings.Contains(out, "before moving forward again: new takes no writes in off") {
		t.Fatalf("rollback to off: code %d\n%s; testers in %v", code, out, stageNow())
	}
	// Undoing the rollback is the move off -> shadow, which skips a stage:
	// refused, with or without a database, and the file stays.
	before, _ := os.ReadFile(file)
	code, _, errOut = pgshift(t, "move", "--flags", file, "--undo", "--force")
	if after, _ := os.ReadFile(file); code != exitDifferences || string(after) != string(before) ||
		!strings.Contains(errOut, "move to dualwrite first; --force never skips a stage") {
		t.Fatalf("move --undo of a rollback to off: code %d, %s; testers in %v", code, errOut, stageNow())
	}
	// Forward again: the verify from before the rollback is recent and
	// equal, but the testers wrote old only since; shadow wants a full
	// verify that started after.
	mustRun(append([]string{"move", "--to", "dualwrite"}, testers[:5]...)...)
	code, out, _ = pgshift(t, append([]string{"preflight", "--to", "shadow"}, testers...)...)
	if code != exitDifferences || !hasGate(out, "ok", "verify equal") || !hasGate(out, "NOT MET", "full verify since a cohort was last in off") ||
		!strings.Contains(out, "0 of 1 tables verified in full and equal since") {
		t.Fatalf("preflight into shadow after a rollback to off: code %d\n%s", code, out)
	}
	mustRun("verify", "--changed")
	if code, out, _ = pgshift(t, append([]string{"preflight", "--to", "shadow"}, testers...)...); code != exitDifferences {
		t.Fatalf("a verify of the changed rows counted across a period in off: code %d\n%s", code, out)
	}
	mustRun("verify")
	if code, out, _ = pgshift(t, append([]string{"preflight", "--to", "shadow"}, testers...)...); code != exitOK {
		t.Fatalf("preflight into shadow after a full verify: code %d\n%s", code, out)
	}
	// Undoing a forward move is a rollback: allowed without a database.
	if code, out, errOut := pgshift(t, "move", "--flags", file, "--undo"); code != exitOK || stageNow() != flags.StageOff ||
		!strings.Contains(out, "undid the last move: routing keys [123 456] from dualwrite back to off") {
		t.Fatalf("move --undo: code %d %s%s; testers in %v", code, out, errOut, stageNow())
	}
	if code, _, errOut := pgshift(t, "move", "--flags", file, "--undo"); code != exitError || !strings.Contains(errOut, "nothing to undo") {
		t.Fatalf("second --undo: code %d, %s", code, errOut)
	}
	var moves int
	if err := p.New.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pgshift.moves WHERE NOT undo`).Scan(&moves); err != nil || moves != 5 {
		t.Fatalf("pgshift.moves holds %d moves, want 5 (the undo, made without new, is not recorded): %v", moves, err)
	}
}

// move refuses what it cannot do before it measures or prints any gate,
// and --json prints JSON.
func TestMoveRefusesBeforeGatesAndPrintsJSON(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(file, []byte(testerFlags), 0o644); err != nil {
		t.Fatal(err)
	}
	noDB := []string{"--old", "postgres://nobody@127.0.0.1:1/none", "--new", "postgres://nobody@127.0.0.1:1/none"}
	code, out, errOut := pgshift(t, append([]string{"move", "--flags", file, "--percent", "10", "--from", "shadow", "--to", "live"}, noDB...)...)
	if code != exitError || out != "" || !strings.Contains(errOut, "the users no rule places are in off, not shadow") {
		t.Fatalf("a percentage of a stage nobody is in: code %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// A rollback needs no database; --json says what happened, as JSON.
	if err := os.WriteFile(file, []byte(strings.Replace(testerFlags, `"off", "off"]`, `"dualwrite", "off"]`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = pgshift(t, append([]string{"move", "--flags", file, "--keys", "123,456", "--to", "off", "--json"}, noDB...)...)
	var got struct {
		Cohort string      `json:"cohort"`
		From   flags.Stage `json:"from"`
		To     flags.Stage `json:"to"`
		Moved  bool        `json:"moved"`
		Before []string    `json:"before_moving_forward_again"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("move --json printed no JSON: %v\n%s%s", err, out, errOut)
	}
	if code != exitOK || got.Cohort != "routing keys [123 456]" || got.From != flags.StageDualWrite || got.To != flags.StageOff ||
		!got.Moved || len(got.Before) != 1 {
		t.Fatalf("move --json of a rollback: code %d, %+v", code, got)
	}
}

// preflight for a flag service pgshift does not write: the stages are
// given, nothing else.
func TestPreflightWithoutAFlagFile(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	urls := []string{"--old", p.Old.URL, "--new", p.New.URL}
	if code, out, errOut := pgshift(t, append([]string{"preflight", "--from", "off", "--to", "dualwrite", allowNonDurable}, urls...)...); code != exitOK {
		t.Fatalf("preflight off -> dualwrite: code %d\n%s%s", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "live"}, "say where the cohort is now: --from STAGE"},
		{[]string{"--from", "off"}, "name the stage to move to with --to"},
		{[]string{"--from", "off", "--to", "halfway"}, `--to: unknown migration stage "halfway": use one of off, dualwrite`},
		{[]string{"--keys", "1", "--to", "live"}, "is read from a flag file: give --flags FILE"},
	} {
		code, _, errOut := pgshift(t, append(append([]string{"preflight"}, tc.args...), urls...)...)
		if code != exitError || !strings.Contains(errOut, tc.want) {
			t.Errorf("preflight %v: code %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// hasGate says preflight's text output has a line for the gate name marked
// mark ("ok" or "NOT MET").
func hasGate(out, mark, name string) bool {
	for line := range strings.Lines(out) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), mark)
		if ok && strings.HasPrefix(strings.TrimSpace(rest), name) {
			return true
		}
	}
	return false
}

// A flag file whose stage flag can give a value that names no stage is
// unusable: move and preflight refuse it (exit 2), naming the flag and the
// variant, and move leaves it as it is.
func TestMoveAndPreflightRefuseAStageTypo(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Empty)
	file := filepath.Join(t.TempDir(), "flags.json")
	typo := strings.Replace(testerFlags, `"dualwrite": "dualwrite"`, `"dualwrite": "dualwrit"`, 1)
	if err := os.WriteFile(file, []byte(typo), 0o644); err != nil {
		t.Fatal(err)
	}
	urls := []string{"--old", p.Old.URL, "--new", p.New.URL}
	const want = `flag pgshift-stage: variant "dualwrite": unknown migration stage "dualwrit"`
	for _, args := range [][]string{
		{"move", "--flags", file, "--keys", "123", "--to", "off"},
		{"move", "--flags", file, "--default", "--to", "dualwrite"},
		{"preflight", "--flags", file, "--rule", "1", "--to", "dualwrite"},
		{"preflight", "--flags", file, "--default", "--to", "dualwrite"},
	} {
		code, out, errOut := pgshift(t, append(args, urls...)...)
		if code != exitError || !strings.Contains(errOut, want) || strings.Contains(out, "ready") {
			t.Errorf("pgshift %v on a stage typo: code %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
		}
	}
	if after, _ := os.ReadFile(file); string(after) != typo {
		t.Fatalf("a refused move changed the file:\n%s", after)
	}
}

// preflight wants durable commits on both sides and says how to get them;
// --allow-non-durable waives the gate, visibly (the test servers run
// without fsync; internal/cutover checks servers that have it).
func TestPreflightWantsDurableCommits(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	args := []string{"preflight", "--from", "off", "--to", "dualwrite", "--old", p.Old.URL, "--new", p.New.URL}
	code, out, errOut := pgshift(t, args...)
	if code != exitDifferences || !hasGate(out, "NOT MET", "durable commits on old") || !hasGate(out, "NOT MET", "durable commits on new") ||
		!strings.Contains(out, "fsync off, synchronous_commit off") || !strings.Contains(out, "turn fsync and synchronous_commit on, on new") ||
		!strings.Contains(out, "not ready: 2 of 6 gates not met") {
		t.Fatalf("preflight on servers without fsync: code %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = pgshift(t, append(args, allowNonDurable)...)
	if code != exitOK || !hasGate(out, "ok", "durable commits on old") || !strings.Contains(out, "waived (--allow-non-durable") {
		t.Fatalf("preflight --allow-non-durable: code %d\n%s%s", code, out, errOut)
	}
}
