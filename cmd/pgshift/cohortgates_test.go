package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
	"github.com/pgshift/pgshift/internal/pgtest"
	"github.com/pgshift/pgshift/repo"
)

// cohortFlagFile: testers 123 and 456 in shadow, the IN/US pro users (rule 2)
// in shadow, everyone else split between shadow and dualwrite.
const cohortFlagFile = `{
  "flags": {
    "pgshift-stage": {
      "state": "ENABLED",
      "variants": {"dualwrite": "dualwrite", "shadow": "shadow", "live": "live"},
      "defaultVariant": "dualwrite",
      "targeting": {"if": [
        {"in": [{"var": "targetingKey"}, ["123", "456"]]}, "shadow",
        {"and": [{"in": [{"var": "country"}, ["IN", "US"]]}, {"==": [{"var": "plan"}, "pro"]}]}, "shadow",
        {"fractional": [{"var": "targetingKey"}, ["shadow", 50], ["dualwrite", 50]]}
      ]}
    }
  }
}
`

// The gates into live count the shadow reads and mismatches of the cohort
// the move moves, not everyone's: the testers are not moved to live on the
// pro users' reads, the pro users are not held back by a tester's
// mismatch, and a percentage counts the users its points move. Without a
// cohort, preflight counts every cohort's and says so.
func TestShadowGatesCountTheMovedCohort(t *testing.T) {
	t.Parallel()
	p := pgtest.NewPair(t, pgtest.Domain)
	file := filepath.Join(t.TempDir(), "flags.json")
	if err := os.WriteFile(file, []byte(cohortFlagFile), 0o644); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ev, err := flags.NewFileEvaluator(t.Context(), file, flags.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	f, err := dualwrite.New(t.Context(), dualwrite.Config{Old: p.Old.Pool, New: p.New.Pool, Stages: ev, Logger: quiet, ShadowRecheck: -1,
		ShadowConcurrency: 1000}) // every read compared: the test counts them
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	store := repo.New(f)
	// reads makes n shadow reads as the user, of a row of the user's own.
	reads := func(key string, attrs map[string]any, n int) (context.Context, uuid.UUID) {
		t.Helper()
		ctx := flags.WithUser(context.Background(), key, attrs)
		u, err := store.Users.Create(ctx, repo.NewUser{Email: key + "@example.com", Name: key})
		if err != nil {
			t.Fatal(err)
		}
		f.Wait()
		for range n {
			if _, err := store.Users.Get(ctx, u.ID); err != nil {
				t.Fatal(err)
			}
		}
		return ctx, u.ID
	}
	pro := map[string]any{"country": "US", "plan": "pro"}
	for i := range 5 {
		reads(fmt.Sprintf("pro-%d", i), pro, 30)
	}
	f.Wait()
	urls := []string{"--old", p.Old.URL, "--new", p.New.URL}
	if code, out, errOut := pgshift(t, append([]string{"sync-sequences"}, urls...)...); code != exitOK {
		t.Fatalf("sync-sequences: code %d\n%s%s", code, out, errOut)
	}
	// preflight returns the gates of moving the cohort to live, by name.
	preflight := func(cohort ...string) (int, map[string]cutover.Gate) {
		t.Helper()
		args := append(append([]string{"preflight", "--to", "live", "--json", allowNonDurable}, cohort...), urls...)
		code, out, errOut := pgshift(t, args...)
		var rep cutover.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("preflight %v: %v\n%s%s", cohort, err, out, errOut)
		}
		gates := map[string]cutover.Gate{}
		for _, g := range rep.Gates {
			gates[g.Name] = g
		}
		return code, gates
	}
	testers := []string{"--flags", file, "--keys", "123,456"}
	proRule := []string{"--flags", file, "--rule", "2"}

	// 150 reads of the pro users, none of the testers'.
	code, g := preflight(testers...)
	if want := "0 of the cohort's (0 users) in the last 10m0s; 150 of every cohort's"; code != exitDifferences || g["shadow reads"].OK || g["shadow reads"].Measured != want {
		t.Fatalf("testers into live on the pro users' reads: code %d, %+v; want not met, %q", code, g["shadow reads"], want)
	}
	code, g = preflight(proRule...)
	if want := "150 of the cohort's (5 users) in the last 10m0s; 150 of every cohort's"; code != exitOK || g["shadow reads"].Measured != want {
		t.Fatalf("pro users into live: code %d, %+v; want ready, %q", code, g, want)
	}
	// Without a cohort the gate counts everyone's, and says so.
	code, out, _ := pgshift(t, append([]string{"preflight", "--from", "shadow", "--to", "live", allowNonDurable}, urls...)...)
	if code != exitOK || !hasGate(out, "ok", "shadow reads") || !strings.Contains(out, "150 in the last 10m0s, every cohort's (no cohort named") {
		t.Fatalf("preflight without a cohort: code %d\n%s", code, out)
	}

	// The testers read enough, then one of tester 123's reads mismatches.
	ctx, id := reads("123", nil, 60)
	reads("456", nil, 50)
	f.Wait()
	if code, g = preflight(testers...); code != exitOK || g["shadow reads"].Measured != "110 of the cohort's (2 users) in the last 10m0s; 260 of every cohort's" {
		t.Fatalf("testers into live after their own reads: code %d, %+v", code, g)
	}
	pgtest.Exec(t, p.New.Pool, "UPDATE users SET name = 'drift' WHERE id = $1", id)
	if _, err := store.Users.Get(ctx, id); err != nil {
		t.Fatal(err)
	}
	f.Wait()
	if code, g = preflight(testers...); code != exitDifferences || g["shadow mismatches"].OK ||
		g["shadow mismatches"].Measured != "1 of the cohort's in the last 10m0s; 1 of every cohort's" {
		t.Fatalf("testers into live after a mismatch of theirs: code %d, %+v", code, g["shadow mismatches"])
	}
	if code, g = preflight(proRule...); code != exitOK || g["shadow mismatches"].Measured != "0 of the cohort's in the last 10m0s; 1 of every cohort's" {
		t.Fatalf("pro users into live after a tester's mismatch: code %d, %+v", code, g["shadow mismatches"])
	}
	// move counts the same way: refused for the testers, naming the gate.
	if code, _, errOut := pgshift(t, append(append([]string{"move", "--to", "live", allowNonDurable}, testers...), urls...)...); code != exitDifferences ||
		!strings.Contains(errOut, "shadow mismatches (1 of the cohort's") {
		t.Fatalf("move testers into live after a mismatch of theirs: code %d, %s", code, errOut)
	}

	// A percentage counts the users its points move: those the shadow
	// bucket's edge gives to live.
	var keys []string
	var ids []uuid.UUID
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("r%d", i))
		u, err := store.Users.Create(flags.WithUser(context.Background(), keys[i], nil), repo.NewUser{Email: keys[i] + "@example.com", Name: keys[i]})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	f.Wait()
	for i, k := range keys {
		if _, err := store.Users.Get(flags.WithUser(context.Background(), k, nil), ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	f.Wait()
	edit, err := cutover.FlagFile{Path: file}.Prepare(cutover.Cohort{Percent: 10, From: flags.StageShadow}, flags.StageLive)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, k := range keys {
		before, err1 := flags.EvaluateFile(file, edit.Before(), "", k, nil)
		after, err2 := flags.EvaluateFile(file, edit.After(), "", k, nil)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if before == flags.StageShadow && after == flags.StageLive {
			moved++
		}
	}
	if moved == 0 || moved > 60 {
		t.Fatalf("10 points of the rollout move %d of 200 users; want about 20", moved)
	}
	code, g = preflight("--flags", file, "--percent", "10", "--from", "shadow")
	if want := fmt.Sprintf("%d of the cohort's (%d users) in the last 10m0s; ", moved, moved); code != exitDifferences || !strings.HasPrefix(g["shadow reads"].Measured, want) {
		t.Fatalf("10%% of the rollout into live: code %d, %+v; want %q", code, g["shadow reads"], want)
	}
}
