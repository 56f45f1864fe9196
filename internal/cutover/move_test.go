package cutover_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
)

// rollout is the reference cohort table: testers live, IN/US pro users in
// shadow, 10% of everyone else in dualwrite, the rest off.
const rollout = `{
  "flags": {
    "pgshift-stage": {
      "state": "ENABLED",
      "variants": {"off": "off", "dualwrite": "dualwrite", "shadow": "shadow", "live": "live"},
      "defaultVariant": "off",
      "targeting": {"if": [
        {"in": [{"var": "targetingKey"}, ["123", "456"]]}, "live",
        {"and": [{"in": [{"var": "country"}, ["IN", "US"]]}, {"==": [{"var": "plan"}, "pro"]}]}, "shadow",
        {"fractional": [["dualwrite", 10], ["off", 90]]}
      ]}
    }
  }
}`

func flagFile(t *testing.T, content string) cutover.FlagFile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return cutover.FlagFile{Path: path}
}

// stageOf evaluates the file for one user, as the application would.
func stageOf(t *testing.T, ff cutover.FlagFile, key string, attrs map[string]any) flags.Stage {
	t.Helper()
	data, err := os.ReadFile(ff.Path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := flags.EvaluateFile(ff.Path, data, "", key, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// share is the percentage of 10,000 keys the file puts in stage s, read
// through the evaluator the application uses.
func share(t *testing.T, ff cutover.FlagFile, s flags.Stage) float64 {
	t.Helper()
	ctx := context.Background()
	ev, err := flags.NewFileEvaluator(ctx, ff.Path, flags.WithoutCache())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ev.Close() }()
	n := 0
	for i := range 10000 {
		if ev.Stage(flags.WithUser(ctx, fmt.Sprint(100000+i), nil)) == s {
			n++
		}
	}
	return float64(n) / 100
}

func TestMoveKeys(t *testing.T) {
	t.Parallel()
	ff := flagFile(t, rollout)
	if s, err := ff.Stage(cutover.Cohort{Keys: []string{"777", "778"}}); err != nil || s != flags.StageOff && s != flags.StageDualWrite {
		t.Fatalf("Stage of 777, 778 = %v, %v", s, err)
	}
	if _, err := ff.Stage(cutover.Cohort{Keys: []string{"123", "888"}}); err == nil {
		t.Fatal("keys in different stages: no error")
	}
	if err := ff.Move(cutover.Cohort{Keys: []string{"456", "900"}}, flags.StageShadow); err == nil || !strings.Contains(err.Error(), "different stages") {
		t.Fatalf("moving keys of two stages at once: %v, want a refusal", err)
	}
	for _, key := range []string{"456", "900"} {
		if err := ff.Move(cutover.Cohort{Keys: []string{key}}, flags.StageShadow); err != nil {
			t.Fatal(err)
		}
	}
	for key, want := range map[string]flags.Stage{"123": flags.StageLive, "456": flags.StageShadow, "900": flags.StageShadow} {
		if got := stageOf(t, ff, key, nil); got != want {
			t.Errorf("after moving 456 and 900 to shadow: %s is %v, want %v", key, got, want)
		}
	}
	// The last key of a rule takes the rule with it.
	if err := ff.Move(cutover.Cohort{Keys: []string{"123"}}, flags.StageShadow); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(ff.Path)
	if strings.Count(string(data), "targetingKey") != 1 || stageOf(t, ff, "123", nil) != flags.StageShadow {
		t.Fatalf("expected one key rule holding 123, 456, 900 in shadow:\n%s", data)
	}
	if s := stageOf(t, ff, "999", map[string]any{"country": "IN", "plan": "pro"}); s != flags.StageShadow {
		t.Fatalf("the attribute rule changed: %v", s)
	}
}

func TestMovePercent(t *testing.T) {
	t.Parallel()
	ff := flagFile(t, rollout)
	if p := share(t, ff, flags.StageDualWrite); p < 9 || p > 11 {
		t.Fatalf("dualwrite before: %.2f%%, want about 10", p)
	}
	if err := ff.Move(cutover.Cohort{Percent: 20, From: flags.StageOff}, flags.StageDualWrite); err != nil {
		t.Fatal(err)
	}
	if p := share(t, ff, flags.StageDualWrite); p < 29 || p > 31 {
		t.Fatalf("dualwrite after moving 20 points: %.2f%%, want about 30", p)
	}
	if err := ff.Move(cutover.Cohort{Percent: 5, From: flags.StageDualWrite}, flags.StageShadow); err != nil {
		t.Fatal(err)
	}
	if p := share(t, ff, flags.StageShadow); p < 4 || p > 6 {
		t.Fatalf("shadow after a new bucket of 5 points: %.2f%%, want about 5", p)
	}
	err := ff.Move(cutover.Cohort{Percent: 50, From: flags.StageShadow}, flags.StageLive)
	if err == nil || !strings.Contains(err.Error(), "less than the 50% to move") {
		t.Fatalf("moving more than a bucket holds: %v", err)
	}
}

func TestMoveRuleAndDefault(t *testing.T) {
	t.Parallel()
	ff := flagFile(t, `{"flags": {"pgshift-stage": {"state": "ENABLED", "variants": {"off": "off"}, "defaultVariant": "off",
		"targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "off"]}}}}`)
	if s, err := ff.Stage(cutover.Cohort{Rule: 1}); err != nil || s != flags.StageOff {
		t.Fatalf("Stage of rule 1 = %v, %v", s, err)
	}
	if err := ff.Move(cutover.Cohort{Rule: 1}, flags.StageDualWrite); err != nil {
		t.Fatal(err)
	}
	if err := ff.Move(cutover.Cohort{Default: true}, flags.StageShadow); err != nil {
		t.Fatal(err)
	}
	if a, b := stageOf(t, ff, "1", map[string]any{"plan": "pro"}), stageOf(t, ff, "2", nil); a != flags.StageDualWrite || b != flags.StageShadow {
		t.Fatalf("pro %v, others %v; want dualwrite, shadow", a, b)
	}
	if _, err := ff.Stage(cutover.Cohort{Rule: 2}); err == nil {
		t.Fatal("rule 2 of a flag with one rule: no error")
	}
}

// Move replaces the file by rename (never a half-written file) and keeps the
// version it replaced; Undo puts it back, once.
func TestMoveIsAtomicAndUndoable(t *testing.T) {
	t.Parallel()
	ff := flagFile(t, rollout)
	before, _ := os.ReadFile(ff.Path)
	ino := func() uint64 {
		fi, err := os.Stat(ff.Path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	i0 := ino()
	if err := ff.Move(cutover.Cohort{Keys: []string{"5"}}, flags.StageShadow); err != nil {
		t.Fatal(err)
	}
	if ino() == i0 {
		t.Fatal("the file was rewritten in place, not replaced")
	}
	if err := ff.Undo(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(ff.Path)
	if string(after) != string(before) {
		t.Fatalf("undo did not restore the file:\n%s", after)
	}
	if err := ff.Undo(); err == nil || !strings.Contains(err.Error(), "nothing to undo") {
		t.Fatalf("second undo: %v, want nothing to undo", err)
	}
}

// A file that is not a valid flag file is refused, not edited.
func TestMoveRefusesBrokenFile(t *testing.T) {
	t.Parallel()
	ff := flagFile(t, `{"flags": {"other": {"state": "ENABLED", "variants": {"a": true}, "defaultVariant": "a"}}}`)
	if err := ff.Move(cutover.Cohort{Default: true}, flags.StageDualWrite); err == nil || !strings.Contains(err.Error(), `no flag "pgshift-stage"`) {
		t.Fatalf("move in a file without the stage flag: %v", err)
	}
	if err := (cutover.FlagFile{Path: ff.Path}).Move(cutover.Cohort{}, flags.StageDualWrite); err == nil || !strings.Contains(err.Error(), "name one cohort") {
		t.Fatalf("move without a cohort: %v", err)
	}
}

// TestUndoIsTheMoveReversed: an undo is gated as the move back, so undoing
// a rollback to off is off -> live, a skip that Check refuses; an undo of a
// file changed since the move is refused.
func TestUndoIsTheMoveReversed(t *testing.T) {
	t.Parallel()
	ff := flagFile(t, rollout)
	if err := ff.Move(cutover.Cohort{Rule: 1}, flags.StageOff); err != nil {
		t.Fatal(err)
	}
	e, err := ff.PrepareUndo()
	if err != nil {
		t.Fatal(err)
	}
	if !e.Undo || e.From != flags.StageOff || e.To != flags.StageLive || e.Cohort.Rule != 1 {
		t.Fatalf("undo of live -> off: %+v, want rule 1 off -> live", e)
	}
	rep, err := cutover.Check(t.Context(), cutover.Target{}, e.From, e.To, cutover.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Ready || rep.Gates[0].Name != "one stage at a time" {
		t.Fatalf("the undo's gates: %+v, want the skip refused", rep)
	}
	data, _ := os.ReadFile(ff.Path)
	if err := os.WriteFile(ff.Path, append(data, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ff.PrepareUndo(); err == nil || !strings.Contains(err.Error(), "changed since the last move") {
		t.Fatalf("undo after a hand edit: %v", err)
	}
}
