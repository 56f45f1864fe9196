package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/flags"
)

// TestStagesFromOFREP takes the stages from a flag server over OFREP, as
// PGSHIFT_FLAGS_OFREP asks: here a minimal one that puts tester 123 in live
// and everyone else in dualwrite. (The providers module runs the demo's
// relay proxy for real.)
func TestStagesFromOFREP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ofrep/v1/evaluate/flags/"+flags.DefaultStageFlag {
			http.NotFound(w, r)
			return
		}
		var req struct {
			Context map[string]any `json:"context"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		stage := "dualwrite"
		if req.Context["targetingKey"] == "123" {
			stage = "live"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"key": flags.DefaultStageFlag, "value": stage, "reason": "TARGETING_MATCH", "variant": stage,
		})
	}))
	t.Cleanup(srv.Close)

	ev, source, err := newStages(context.Background(), appConfig{FlagsOFREP: srv.URL},
		flags.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	if want := "OFREP " + srv.URL; source != want {
		t.Errorf("source %q, want %q", source, want)
	}
	for key, want := range map[string]flags.Stage{"123": flags.StageLive, "9": flags.StageDualWrite} {
		if d := ev.Decide(flags.WithUser(context.Background(), key, nil)); d.Stage != want || d.Origin != flags.OriginEvaluated {
			t.Errorf("user %s: %+v, want %v from the flag server", key, d, want)
		}
	}
}

func TestFlagSourceRefusesTwoSourcesAndBadEndpoints(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ file, ofrep, wantErr string }{
		{"flags.json", "http://127.0.0.1:1031", "unset one"},
		{"", "127.0.0.1:1031", "base URL"},
		{"", "ftp://flags", "base URL"},
	} {
		if _, err := flagSource(tc.file, tc.ofrep); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("flagSource(%q, %q): %v, want an error saying %q", tc.file, tc.ofrep, err, tc.wantErr)
		}
	}
	if path, err := flagSource("", "http://127.0.0.1:1031"); err != nil || path != "" {
		t.Errorf("flagSource with an endpoint only: %q, %v; want no file and no error", path, err)
	}
}
