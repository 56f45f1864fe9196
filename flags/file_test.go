package flags_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		{"a stage name with a typo", func() { writeFile(t, b.path, strings.Replace(cohortsText(t), `"live": "live"`, `"live": "liv"`, 1)) },
			`variant \"live\": unknown migration stage \"liv\"`},
		{"a rule naming no variant", func() {
			writeFile(t, b.path, strings.Replace(cohortsText(t), `["dualwrite", 10]`, `["dualwrit", 10]`, 1))
		},
			`variant \"dualwrit\", which is not among its variants`},
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

// TestBooleanSchemeRefusesNonBooleans: in the boolean scheme a write or read
// flag that can give anything but true or false makes the file unusable.
func TestBooleanSchemeRefusesNonBooleans(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, strings.Replace(cohortsText(t), `"variants": { "on": true, "off": false },
      "defaultVariant": "off",
      "targeting": {
        "if": [
          { "in": [{ "var": "targetingKey" }, ["123", "456"]] }, "on"
        ]`, `"variants": { "on": "true", "off": "false" },
      "defaultVariant": "off",
      "targeting": {
        "if": [
          { "in": [{ "var": "targetingKey" }, ["123", "456"]] }, "on"
        ]`, 1))
	ev, err := flags.NewFileEvaluator(t.Context(), path, flags.WithBooleanFlags("", ""))
	if err == nil {
		_ = ev.Close()
		t.Fatal("a read flag whose variant holds a string: no error")
	}
	if want := `flag read-from-new-db: variant "off" holds "false", not a boolean`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want it to say %q", err, want)
	}
	// The string scheme does not read the boolean flags.
	ev, err = flags.NewFileEvaluator(t.Context(), path)
	if err != nil {
		t.Fatalf("string scheme: %v", err)
	}
	_ = ev.Close()
}

func cohortsText(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(cohorts)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
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
		{"typo.json", staticFlag("liv"), `flag pgshift-stage: variant "v": unknown migration stage "liv"`},
		{"number.json", `{"flags": {"pgshift-stage": {"state": "ENABLED", "variants": {"v": 3}, "defaultVariant": "v"}}}`, `variant "v" holds 3, not a stage name`},
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

// TestFileHealthLogsChangesOnce breaks the file and writes the same broken
// version again and again: one log line, not one per reading; FileHealth
// and the gauge pgshift.flags.file_usable say it is not usable; the good
// version written back is logged once as usable again.
func TestFileHealthLogsChangesOnce(t *testing.T) {
	t.Parallel()
	good := staticFlag("live")
	b := setupContent(t, good)
	h, ok := b.ev.FileHealth()
	if !ok || !h.Usable || h.File != b.path || h.Version == "" {
		t.Fatalf("health at start: %+v, %v", h, ok)
	}
	version := h.Version
	for i := range 5 {
		writeFile(t, b.path, `{"flags": {`)
		waitFor(t, fmt.Sprintf("writing %d to be noticed", i), func() bool { h, _ = b.ev.FileHealth(); return !h.Usable })
		time.Sleep(3 * reloadSettle)
	}
	if n := b.logs.count("not usable"); n != 1 {
		t.Errorf("%d log lines about the unusable file, want 1:\n%s", n, b.logs)
	}
	if h, _ := b.ev.FileHealth(); h.Usable || !strings.Contains(h.LastError, "not valid JSON") || h.Version != version || h.Since.IsZero() {
		t.Errorf("health of a broken file: %+v", h)
	}
	if g := b.gauge(t, "pgshift.flags.file_usable"); g != 0 {
		t.Errorf("pgshift.flags.file_usable = %d while broken, want 0", g)
	}
	writeFile(t, b.path, good)
	waitFor(t, "the good version to be noticed", func() bool { h, _ = b.ev.FileHealth(); return h.Usable })
	// The health turns usable just before the line is logged.
	waitFor(t, "the good version to be logged", func() bool { return b.logs.count("usable again") > 0 })
	time.Sleep(3 * reloadSettle)
	if n := b.logs.count("usable again"); n != 1 {
		t.Errorf("%d log lines about the file usable again, want 1:\n%s", n, b.logs)
	}
	if h.LastError != "" || h.Version != version {
		t.Errorf("health once good again: %+v", h)
	}
	if g := b.gauge(t, "pgshift.flags.file_usable"); g != 1 {
		t.Errorf("pgshift.flags.file_usable = %d once good, want 1", g)
	}
}

// reloadSettle is longer than the watcher's delay before it reads the file.
const reloadSettle = 100 * time.Millisecond
