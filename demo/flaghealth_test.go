package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pgshift/pgshift/flags"
)

// logBuffer is a log destination tests read while the application writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// count returns how many lines of the log contain s.
func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// usableGauge is the value /metrics gives pgshift.flags.file_usable for the
// demo's flag file, or "" when it does not show it.
func usableGauge(t *testing.T, ta *testApp) string {
	t.Helper()
	return gaugeOf(t, ta, "pgshift_flags_file_usable", "")
}

// versionGauge is the version /metrics gives pgshift.flags.file_version
// (with value 1) for the demo's flag file.
func versionGauge(t *testing.T, ta *testApp) string {
	t.Helper()
	return gaugeOf(t, ta, "pgshift_flags_file_version", "version")
}

// gaugeOf returns, from /metrics, the value of the gauge name for the
// demo's flag file or, with label, the value of that label on the series
// whose value is 1.
func gaugeOf(t *testing.T, ta *testApp, name, label string) string {
	t.Helper()
	res, err := http.Get(ta.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^`+name+`\{([^}]*)\} (\S+)$`).FindAllStringSubmatch(string(b), -1) {
		if !strings.Contains(m[1], `file="`+ta.flagsPath+`"`) {
			continue
		}
		if label == "" {
			return m[2]
		}
		if v := regexp.MustCompile(`(?:^|,)` + label + `="([^"]*)"`).FindStringSubmatch(m[1]); v != nil && m[2] == "1" {
			return v[1]
		}
	}
	return ""
}

// The flag file's state shows in /healthz, the dashboard and /metrics, and
// each change of it is logged once: a broken file (invalid JSON, then a
// stage typo) is not usable, the version in use stays and is named, and
// writing the same broken file again and again logs nothing more; once
// fixed, it is usable again, under its new version.
func TestFlagFileHealthInHealthzDashboardMetricsAndLog(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	ta := setupLogging(t, flagFileFor(flags.StageDualWrite), &logs)
	health := func() (int, map[string]any, map[string]any) {
		t.Helper()
		h := ta.do(t, "GET", "/healthz", "")
		d := ta.do(t, "GET", "/api/dashboard", "")
		fh, _ := h.body["flags"].(map[string]any)
		dh, _ := d.body["flags_health"].(map[string]any)
		return h.status, fh, dh
	}
	code, fh, dh := health()
	version, _ := fh["version"].(string)
	if code != http.StatusOK || fh["usable"] != true || version == "" || fh["file"] != ta.flagsPath || dh["version"] != version {
		t.Fatalf("at start: /healthz %d %v, dashboard %v; want usable, with the file and a version", code, fh, dh)
	}
	if g := usableGauge(t, ta); g != "1" {
		t.Fatalf("pgshift_flags_file_usable for %s = %q at start, want 1", ta.flagsPath, g)
	}
	if v := versionGauge(t, ta); v != version {
		t.Fatalf("pgshift_flags_file_version names version %q at start, want %q", v, version)
	}

	const broken = "flag file changed and is not usable"
	for i, bad := range []struct {
		content, inError string
	}{
		{`{"flags": {`, "not valid JSON"},
		{strings.Replace(string(flagFileFor(flags.StageLive)), `"live": "live"`, `"live": "liv"`, 1), `"liv"`},
	} {
		// The same broken version, written again and again (each write
		// whole: an in-place write can be read half done, another state).
		for range 20 {
			if err := writeFileAtomic(ta.flagsPath, []byte(bad.content)); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, func() string {
			code, fh, dh := health()
			errText, _ := fh["last_error"].(string)
			switch {
			case code != http.StatusOK:
				return fmt.Sprintf("/healthz %d with a broken flag file, want 200 (the last good version stays in use)", code)
			case fh["usable"] != false || !strings.Contains(errText, bad.inError) || fh["since"] == nil || fh["version"] != version:
				return fmt.Sprintf("/healthz flags %v, want not usable, an error naming %s, since when, and version %s in use", fh, bad.inError, version)
			case dh["usable"] != false || dh["last_error"] != errText:
				return fmt.Sprintf("dashboard flags_health %v, want the same state as /healthz", dh)
			case usableGauge(t, ta) != "0" || versionGauge(t, ta) != version:
				return fmt.Sprintf("pgshift_flags_file_usable = %q, version %q while the file is broken, want 0 and %s", usableGauge(t, ta), versionGauge(t, ta), version)
			case logs.count(broken) != i+1:
				return fmt.Sprintf("%d log lines %q after %d broken versions, want %d", logs.count(broken), broken, i+1, i+1)
			}
			return ""
		})
	}
	if err := writeFileAtomic(ta.flagsPath, flagFileFor(flags.StageShadow)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		code, fh, dh := health()
		if code != http.StatusOK || fh["usable"] != true || fh["last_error"] != nil || fh["version"] == version || dh["usable"] != true {
			return fmt.Sprintf("after the fix: /healthz %d %v, dashboard %v; want usable under a new version", code, fh, dh)
		}
		if g, v := usableGauge(t, ta), versionGauge(t, ta); g != "1" || v != fh["version"] {
			return fmt.Sprintf("pgshift_flags_file_usable = %q, version %q after the fix, want 1 and %v", g, v, fh["version"])
		}
		if n := logs.count("flag file reloaded"); n != 1 {
			return fmt.Sprintf("%d log lines saying the file was reloaded, want 1", n)
		}
		return ""
	})
	if n := logs.count(broken); n != 2 {
		t.Fatalf("%d log lines %q in all, want 2 (one per broken version)", n, broken)
	}
}
