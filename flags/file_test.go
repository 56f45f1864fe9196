package flags_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/flags"
)

// TestEditChangesDecisions warms the cache for many users, edits the file
// and checks that once one user's decision changes, no user is answered
// from the old configuration: a cache that the configuration change did not
// invalidate would keep answering the warmed decisions.
func TestEditChangesDecisions(t *testing.T) {
	t.Parallel()
	for _, edit := range []struct {
		name  string
		write func(*testing.T, string, string)
	}{
		{"in place", writeFile},
		{"atomic rename", renameFile},
	} {
		t.Run(edit.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, cohorts)
			warm := []string{"123", "456", "2", "3"}
			for i := range 200 {
				warm = append(warm, fmt.Sprint(1000+i))
			}
			for _, key := range warm {
				waitFor(t, "a cached decision for "+key, func() bool {
					return b.ev.Decide(user(key, nil)).Origin == flags.OriginCached
				})
			}

			edit.write(t, b.path, staticFlag("complete"))
			took := waitFor(t, "the edit to reach decisions", func() bool {
				return b.ev.Stage(user("123", nil)) == flags.StageComplete
			})
			t.Logf("the edit reached decisions after %v", took)
			for _, key := range warm {
				if d := b.ev.Decide(user(key, nil)); d.Stage != flags.StageComplete {
					t.Errorf("user %s after the edit: %+v, want complete", key, d)
				}
			}
			if n := b.logs.count("flag file reloaded"); n != 1 {
				t.Errorf("%d reload log lines, want 1:\n%s", n, b.logs)
			}
		})
	}
}

// TestBrokenFileKeepsLastGood breaks a running evaluator's file in every
// way and checks that flagd goes on evaluating the last good configuration
// (with the cache off, so every answer comes from flagd) and that each
// breakage is logged with the file and the reason.
func TestBrokenFileKeepsLastGood(t *testing.T) {
	t.Parallel()
	b := setup(t, cohorts, flags.WithoutCache())
	for i, breakage := range []struct {
		name   string
		apply  func()
		reason string
	}{
		{"truncated JSON", func() { writeFile(t, b.path, `{"flags": {`) }, "not valid JSON"},
		{"empty", func() { writeFile(t, b.path, "") }, "is empty"},
		{"not flagd", func() { writeFile(t, b.path, `{"flags": {"pgshift-stage": {"variants": 3}}}`) }, "flagd schema"},
		{"deleted", func() {
			if err := os.Remove(b.path); err != nil {
				t.Fatal(err)
			}
		}, "no such file"},
	} {
		breakage.apply()
		waitFor(t, breakage.name+" to be noticed", func() bool {
			return b.logs.count("not usable", b.path, breakage.reason) > 0
		})
		if n := b.logs.count("not usable"); n != i+1 {
			t.Errorf("%s: %d log lines about unusable files, want %d", breakage.name, n, i+1)
		}
		for key, want := range map[string]flags.Stage{"123": flags.StageLive, "2": flags.StageDualWrite, "1": flags.StageOff} {
			if d := b.ev.Decide(user(key, nil)); d.Stage != want || d.Origin != flags.OriginEvaluated {
				t.Errorf("%s: user %s: %+v, want %v evaluated from the last good file", breakage.name, key, d, want)
			}
		}
	}
	writeFile(t, b.path, staticFlag("shadow"))
	waitFor(t, "the repaired file to be used", func() bool { return b.ev.Stage(user("123", nil)) == flags.StageShadow })
}

func TestStartupErrorNamesFileAndProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, problem string
	}{
		{"missing.json", "", "no such file"},
		{"empty.json", " \n", "is empty"},
		{"broken.json", `{"flags": {"pgshift-stage": `, "not valid JSON"},
		{"schema.json", `{"flags": {"pgshift-stage": {"state": "ON", "variants": {}, "defaultVariant": "x"}}}`, "flagd schema"},
		{"flags.txt", `{"flags": {}}`, "flags.txt"},
	} {
		path := filepath.Join(dir, tc.name)
		if tc.name != "missing.json" {
			writeFile(t, path, tc.content)
		}
		ev, err := flags.NewFileEvaluator(t.Context(), path)
		if err == nil {
			_ = ev.Close()
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tc.problem) {
			t.Errorf("%s: error %q, want it to name %s and say %q", tc.name, msg, path, tc.problem)
		}
	}
}
