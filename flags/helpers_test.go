package flags_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pgshift/pgshift/flags"
)

// cohorts is the DevCycle write-up's rollout as one flagd file.
const cohorts = "testdata/cohorts.flagd.json"

// bundle is one evaluator with everything a test inspects around it.
type bundle struct {
	ev     *flags.Evaluator
	path   string
	logs   *syncBuffer
	reader *sdkmetric.ManualReader
}

// setup copies the flag file src into a fresh directory and starts a file
// evaluator on the copy, with its logs and metrics captured.
func setup(t *testing.T, src string, opts ...flags.Option) *bundle {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	return setupContent(t, string(data), opts...)
}

func setupContent(t *testing.T, content string, opts ...flags.Option) *bundle {
	t.Helper()
	b := &bundle{
		path:   filepath.Join(t.TempDir(), "flags.json"),
		logs:   &syncBuffer{},
		reader: sdkmetric.NewManualReader(),
	}
	writeFile(t, b.path, content)
	opts = append([]flags.Option{
		flags.WithLogger(newLogger(b.logs)),
		flags.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(b.reader))),
	}, opts...)
	ev, err := flags.NewFileEvaluator(t.Context(), b.path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ev.Close(); err != nil {
			t.Error(err)
		}
	})
	b.ev = ev
	return b
}

// writeFile replaces the file's content the way an editor that writes in
// place does.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// renameFile replaces the file the way an editor that saves atomically does.
func renameFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func user(key string, attrs map[string]any) context.Context {
	return flags.WithUser(context.Background(), key, attrs)
}

// fallbacks returns the pgshift.flags.fallbacks counter per cause.
func (b *bundle) fallbacks(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := b.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "pgshift.flags.fallbacks" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				cause, _ := dp.Attributes.Value("cause")
				got[cause.AsString()] += dp.Value
			}
		}
	}
	return got
}

// gauge returns the value of an int64 gauge.
func (b *bundle) gauge(t *testing.T, name string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := b.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				for _, dp := range m.Data.(metricdata.Gauge[int64]).DataPoints {
					return dp.Value
				}
			}
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// waitFor polls cond until it holds; it fails the test after a minute, a
// bound far above what any check here needs, so a slow machine does not
// fail it.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		// (A loaded 2-core machine under the race detector once took over
		// 10 s to parse and refuse a file over MaxFileSize.)
		if time.Since(start) > time.Minute {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// syncBuffer is a log destination written by the evaluator's goroutines and
// read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count returns how many log lines contain every one of parts.
func (b *syncBuffer) count(parts ...string) int {
	n := 0
	for line := range strings.Lines(b.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

func newLogger(b *syncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
