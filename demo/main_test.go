package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/internal/cutover"
	"github.com/pgshift/pgshift/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const testToken = "test-token"

// testApp is a demo application on fresh databases, served over HTTP.
type testApp struct {
	*app
	url string
}

// setup starts the demo application on a fresh pair of databases seeded
// with 12 accounts on both sides, deciding stages by the flag file content
// flagFile (written to a temporary file the test may rewrite).
func setup(t *testing.T, flagFile []byte) *testApp {
	t.Helper()
	return setupLogging(t, flagFile, io.Discard)
}

// setupLogging is setup with the application's log (text, info and above)
// written to logs.
func setupLogging(t *testing.T, flagFile []byte, logs io.Writer) *testApp {
	t.Helper()
	ctx := context.Background()
	pair := pgtest.NewPair(t, pgtest.Domain)
	oldPool, err := openPool(ctx, "old", pair.Old.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oldPool.Close)
	newPool, err := openPool(ctx, "new", pair.New.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(newPool.Close)
	accounts := makeAccounts(12)
	if err := seed(ctx, accounts, 2, oldPool, newPool); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*pgxpool.Pool{oldPool, newPool} {
		if _, err := dualwrite.InstallCapture(ctx, p, "public", nil); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(path, flagFile, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := newApp(ctx, appConfig{
		Old: oldPool, New: newPool, FlagsPath: path, Accounts: accounts, Token: testToken,
		// The test servers run without fsync, as the servers the demo
		// launches do.
		Strict: true, Limits: cutover.Limits{AllowNonDurable: true}, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	srv := httptest.NewServer(a.handler())
	t.Cleanup(srv.Close)
	return &testApp{app: a, url: srv.URL}
}

// demoFlags is demo/flags.json, the file `go run ./demo` starts with.
func demoFlags(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("flags.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// response is what a test reads of an API answer.
type response struct {
	status            int
	stage, served, op string
	header            http.Header
	body              map[string]any
}

// do makes one API request with the given headers ("X-User-ID: 123", ...).
func (ta *testApp) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, ta.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	r := response{status: res.StatusCode, stage: res.Header.Get(headerStage), served: res.Header.Get(headerServed),
		op: res.Header.Get(headerOp), header: res.Header}
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		var m any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v: %s", method, path, err, b)
		}
		r.body, _ = m.(map[string]any)
	}
	return r
}

// eventually retries check every 20ms until it returns "" or 10s pass.
func eventually(t *testing.T, check func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
