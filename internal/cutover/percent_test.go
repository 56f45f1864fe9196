package cutover_test

import (
	"os"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
)

// TestMovePercentMovesOnlyFromTheSourceBucket is the README's flow on the
// demo's file: 10 points from shadow to live. fractional places users by the
// position of their bucket, so a bucket appended or inserted anywhere but
// beside the source shifts the users of every bucket after it; only shadow
// users may change, and only to live.
func TestMovePercentMovesOnlyFromTheSourceBucket(t *testing.T) {
	t.Parallel()
	demo, err := os.ReadFile("../../demo/flags.json")
	if err != nil {
		t.Fatal(err)
	}
	users := plainUsers(10000)
	for _, tc := range []struct {
		name     string
		p        int
		from, to flags.Stage
	}{
		{"into a stage with no bucket", 10, flags.StageShadow, flags.StageLive},
		{"into the bucket after", 10, flags.StageShadow, flags.StageDualWrite},
		{"into the bucket before", 30, flags.StageDualWrite, flags.StageShadow},
		{"back again", 5, flags.StageDualWrite, flags.StageOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ff := flagFile(t, string(demo))
			before := stagesOf(t, demo, users)
			if err := ff.Move(cutover.Cohort{Percent: tc.p, From: tc.from}, tc.to); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(ff.Path)
			after := stagesOf(t, data, users)
			moved := 0
			for pair, n := range transitions(before, after) {
				if pair != [2]flags.Stage{tc.from, tc.to} {
					t.Errorf("%d users went %v -> %v; only %v -> %v may move", n, pair[0], pair[1], tc.from, tc.to)
				}
				moved = n
			}
			// Every user here reaches the fractional: tc.p points of it.
			if lo, hi := tc.p*100-200, tc.p*100+200; moved < lo || moved > hi {
				t.Errorf("%d of 10000 users moved %v -> %v, want about %d", moved, tc.from, tc.to, tc.p*100)
			}
		})
	}
}

// TestMovePercentCreatesTheSplit: a file whose rules end in a stage, with no
// fractional, gets one where those users are, and a percentage of the
// default's stage moves; a percentage of a stage the default is not in is
// refused before anything else.
func TestMovePercentCreatesTheSplit(t *testing.T) {
	t.Parallel()
	const noSplit = `{
  "flags": {
    "pgshift-stage": {
      "state": "ENABLED",
      "variants": {"off": "off", "dualwrite": "dualwrite", "shadow": "shadow"},
      "defaultVariant": "dualwrite",
      "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["123", "456"]]}, "shadow"]}
    }
  }
}
`
	users := plainUsers(10000)
	ff := flagFile(t, noSplit)
	if _, err := ff.Prepare(cutover.Cohort{Percent: 10, From: flags.StageOff}, flags.StageDualWrite); err == nil ||
		!strings.Contains(err.Error(), "the users no rule places are in dualwrite, not off") {
		t.Fatalf("a percentage of a stage nobody is in: %v", err)
	}
	e, err := ff.Prepare(cutover.Cohort{Percent: 10, From: flags.StageDualWrite}, flags.StageShadow)
	if err != nil {
		t.Fatal(err)
	}
	if e.From != flags.StageDualWrite || e.To != flags.StageShadow {
		t.Fatalf("edit %v -> %v", e.From, e.To)
	}
	if err := e.Apply(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(ff.Path)
	tr := transitions(stagesOf(t, []byte(noSplit), users), stagesOf(t, data, users))
	if n := tr[[2]flags.Stage{flags.StageDualWrite, flags.StageShadow}]; len(tr) != 1 || n < 800 || n > 1200 {
		t.Fatalf("transitions %v, want about 1000 dualwrite -> shadow only:\n%s", tr, data)
	}
	if s := stageOf(t, ff, "123", nil); s != flags.StageShadow {
		t.Fatalf("tester 123: %v", s)
	}
	// The README's flow: the users no rule places are the final value of the
	// "if", and the default variant is off. A fractional gives a request
	// without a routing key the default variant: it must stay dualwrite.
	const finalValue = `{"flags": {"pgshift-stage": {"state": "ENABLED", "variants": {"off": "off", "dualwrite": "dualwrite", "shadow": "shadow"},
		"defaultVariant": "off", "targeting": {"if": [{"in": [{"var": "targetingKey"}, ["123"]]}, "shadow", "dualwrite"]}}}}`
	ff = flagFile(t, finalValue)
	if err := ff.Move(cutover.Cohort{Percent: 10, From: flags.StageDualWrite}, flags.StageShadow); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(ff.Path)
	withEmpty := append(plainUsers(10000), testUser{})
	tr = transitions(stagesOf(t, []byte(finalValue), withEmpty), stagesOf(t, data, withEmpty))
	if n := tr[[2]flags.Stage{flags.StageDualWrite, flags.StageShadow}]; len(tr) != 1 || n < 800 || n > 1200 {
		t.Fatalf("transitions %v, want about 1000 dualwrite -> shadow only (a request without a routing key stays dualwrite):\n%s", tr, data)
	}
	// The file without rules at all: the default variant is split.
	ff = flagFile(t, `{"flags": {"pgshift-stage": {"state": "ENABLED", "variants": {"off": "off"}, "defaultVariant": "off"}}}`)
	if err := ff.Move(cutover.Cohort{Percent: 25, From: flags.StageOff}, flags.StageDualWrite); err != nil {
		t.Fatal(err)
	}
	if p := share(t, ff, flags.StageDualWrite); p < 23 || p > 27 {
		t.Fatalf("dualwrite after splitting the default: %.2f%%, want about 25", p)
	}
}

// TestMoveChangesOnlyWhatItMoves: a move rewrites the values it changes and
// keeps every other byte of the file (layout, key order), so its diff is
// the change.
func TestMoveChangesOnlyWhatItMoves(t *testing.T) {
	t.Parallel()
	demo, err := os.ReadFile("../../demo/flags.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cohort  cutover.Cohort
		to      flags.Stage
		changed []string // the lines of the new file that differ
	}{
		{"percent", cutover.Cohort{Percent: 10, From: flags.StageDualWrite}, flags.StageShadow,
			[]string{`          { "fractional": [{ "var": "targetingKey" }, ["shadow", 30], ["dualwrite", 70]] }`}},
		{"rule", cutover.Cohort{Rule: 2}, flags.StageLive,
			[]string{`          ] }, "live",`}},
		{"keys into a rule", cutover.Cohort{Keys: []string{"9"}}, flags.StageLive,
			[]string{`          { "in": [{ "var": "targetingKey" }, ["123", "456", "9"]] }, "live",`}},
		{"keys into a new rule", cutover.Cohort{Keys: []string{"9"}}, flags.StageRampdown,
			[]string{`          {"in": [{"var": "targetingKey"}, ["9"]]}, "rampdown",`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ff := flagFile(t, string(demo))
			if err := ff.Move(tc.cohort, tc.to); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(ff.Path)
			if got := changedLines(string(demo), string(data)); strings.Join(got, "\n") != strings.Join(tc.changed, "\n") {
				t.Fatalf("changed lines:\n%s\nwant:\n%s\nfile:\n%s", strings.Join(got, "\n"), strings.Join(tc.changed, "\n"), data)
			}
		})
	}
}

// changedLines returns the lines of after that before does not have at the
// same place, after lines added at one point (a line-level diff of one hunk).
func changedLines(before, after string) []string {
	b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
	i := 0
	for i < len(b) && i < len(a) && b[i] == a[i] {
		i++
	}
	j, k := len(b)-1, len(a)-1
	for j >= i && k >= i && b[j] == a[k] {
		j--
		k--
	}
	return a[i : k+1]
}
