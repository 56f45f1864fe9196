package providers_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	gofeatureflaginprocess "github.com/open-feature/go-sdk-contrib/providers/go-feature-flag-in-process/pkg"
	"github.com/open-feature/go-sdk-contrib/providers/ofrep"
	ffclient "github.com/thomaspoignant/go-feature-flag"
	"github.com/thomaspoignant/go-feature-flag/retriever/fileretriever"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/providers/internal/relayproxy"
)

// The reference cohorts, in flagd's format and in go-feature-flag's.
const (
	flagdCohorts = "../flags/testdata/cohorts.flagd.json"
	goffCohorts  = "testdata/cohorts.goff.yaml"
)

// sharedRelay serves goffCohorts to the examples and benchmarks, which
// cannot start one of their own; tests that change or stop a relay proxy
// start their own.
var sharedRelay *relayproxy.Proxy

func TestMain(m *testing.M) {
	var err error
	sharedRelay, err = relayproxy.Start(context.Background(), relayproxy.Options{FlagsFile: goffCohorts})
	if err != nil {
		fmt.Fprintln(os.Stderr, "providers tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = sharedRelay.Close()
	os.Exit(code)
}

// source is one way of running the reference cohorts through pgshift's
// flags: a provider, its flag file format and how to change the flags.
type source struct {
	name string
	// cohorts is the reference cohort file in the source's format.
	cohorts string
	// start returns an evaluator over the flag file path (in the source's
	// format), with opts.
	start func(t testing.TB, path string, opts ...flags.Option) *flags.Evaluator
	// needsKey: the provider refuses an evaluation without a targeting key.
	needsKey bool
}

var (
	flagdFile = source{
		name:    "flagd file",
		cohorts: flagdCohorts,
		start: func(t testing.TB, path string, opts ...flags.Option) *flags.Evaluator {
			t.Helper()
			return started(t)(flags.NewFileEvaluator(context.Background(), path, opts...))
		},
	}
	inProcess = source{
		name:     "go-feature-flag in process",
		cohorts:  goffCohorts,
		start:    startInProcess,
		needsKey: true,
	}
	overOFREP = source{
		name:     "relay proxy over OFREP",
		cohorts:  goffCohorts,
		start:    startOFREP,
		needsKey: true,
	}
	// providers are the sources this module exists to test.
	providers = []source{inProcess, overOFREP}
)

// startInProcess evaluates the go-feature-flag file at path in process,
// re-read every second (go-feature-flag's shortest polling interval).
func startInProcess(t testing.TB, path string, opts ...flags.Option) *flags.Evaluator {
	t.Helper()
	p, err := gofeatureflaginprocess.NewProviderWithContext(context.Background(), gofeatureflaginprocess.ProviderOptions{
		GOFeatureFlagConfig: &ffclient.Config{
			PollingInterval: time.Second,
			Retriever:       &fileretriever.Retriever{Path: path},
			LeveledLogger:   slog.New(slog.DiscardHandler),
		},
	})
	if err != nil {
		t.Fatalf("go-feature-flag in process over %s: %v", path, err)
	}
	return started(t)(flags.NewProviderEvaluator(context.Background(), p, withTTL(opts)...))
}

// startOFREP starts a relay proxy serving the go-feature-flag file at path
// (re-read every second) and evaluates through it over OFREP.
func startOFREP(t testing.TB, path string, opts ...flags.Option) *flags.Evaluator {
	t.Helper()
	rp := startRelay(t, path)
	return overRelay(t, rp, opts...)
}

func startRelay(t testing.TB, path string) *relayproxy.Proxy {
	t.Helper()
	rp, err := relayproxy.Start(context.Background(), relayproxy.Options{FlagsFile: path, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rp.Close() })
	return rp
}

// overRelay returns an evaluator that reads rp over OFREP: one
// application server of a fleet that shares rp.
func overRelay(t testing.TB, rp *relayproxy.Proxy, opts ...flags.Option) *flags.Evaluator {
	t.Helper()
	p := ofrep.NewProvider(rp.URL(), ofrep.WithTimeout(5*time.Second))
	return started(t)(flags.NewProviderEvaluator(context.Background(), p, withTTL(opts)...))
}

// withTTL puts a cache lifetime before opts (which may override it):
// these providers report no configuration changes.
func withTTL(opts []flags.Option) []flags.Option {
	return append([]flags.Option{flags.WithCacheTTL(time.Minute)}, opts...)
}

// started fails the test on a constructor's error and closes the
// evaluator when the test ends.
func started(t testing.TB) func(*flags.Evaluator, error) *flags.Evaluator {
	return func(ev *flags.Evaluator, err error) *flags.Evaluator {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := ev.Close(); err != nil {
				t.Error(err)
			}
		})
		return ev
	}
}

// copyFile copies src into a fresh directory, for a test that changes it.
func copyFile(t testing.TB, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(src))
	replaceFile(t, path, string(data))
	return path
}

// replaceFile writes content to path atomically, as a deployment does, so
// that a poller never reads half a file.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func user(key string, attrs map[string]any) context.Context {
	return flags.WithUser(context.Background(), key, attrs)
}

// observed is what an evaluator logged and counted.
type observed struct {
	logs   *records
	reader *sdkmetric.ManualReader
}

// observe returns options that capture an evaluator's logs and metrics.
func observe() (*observed, []flags.Option) {
	o := &observed{logs: &records{}, reader: sdkmetric.NewManualReader()}
	return o, []flags.Option{
		flags.WithLogger(slog.New(o.logs)),
		flags.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))),
	}
}

// fallbacks returns the pgshift.flags.fallbacks counter per cause.
func (o *observed) fallbacks(t testing.TB) map[flags.Cause]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := o.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[flags.Cause]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != "pgshift.flags.fallbacks" || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				cause, _ := dp.Attributes.Value("cause")
				got[flags.Cause(cause.AsString())] += dp.Value
			}
		}
	}
	return got
}

// records is a slog.Handler that keeps every record, for tests that count
// log lines.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }

func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}

// fallbackLines returns the "cause flag" of every "cannot decide" warning
// logged.
func (r *records) fallbackLines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lines []string
	for _, rec := range r.recs {
		if rec.Level != slog.LevelWarn {
			continue
		}
		var cause, flag string
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "cause":
				cause = a.Value.String()
			case "flag":
				flag = a.Value.String()
			}
			return true
		})
		lines = append(lines, cause+" "+flag)
	}
	return lines
}

// waitFor polls cond until it holds; it fails the test after a minute, far
// above what any change here needs (a polling interval of one second plus a
// cache lifetime), so a loaded machine does not fail it.
func waitFor(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > time.Minute {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
