package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// The stage headers follow demo/flags.json's cohorts: testers live (new
// answers), IN/US pro users in shadow (old answers), everyone else split by
// percentage between shadow and dualwrite (old answers).
func TestStageHeadersPerCohort(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	inPro := ta.accounts[2] // makeAccounts: "1000" is IN and pro
	if inPro.Country != "IN" || inPro.Plan != "pro" {
		t.Fatalf("account %s is %s %s, want IN pro", inPro.Key, inPro.Country, inPro.Plan)
	}
	cases := []struct {
		name       string
		headers    []string
		wantStages []string
		wantServed string
	}{
		{"tester 123", []string{"X-User-ID: 123"}, []string{"live"}, "new"},
		{"tester 456", []string{"X-User-ID: 456"}, []string{"live"}, "new"},
		{"seeded IN pro user", []string{"X-User-ID: " + inPro.Key}, []string{"shadow"}, "old"},
		{"US pro user by headers", []string{"X-User-ID: 9001", "X-Country: US", "X-Plan: pro"}, []string{"shadow"}, "old"},
		{"DE pro user", []string{"X-User-ID: 9002", "X-Country: DE", "X-Plan: pro"}, []string{"shadow", "dualwrite"}, "old"},
		{"US free user", []string{"X-User-ID: 9003", "X-Country: US", "X-Plan: free"}, []string{"shadow", "dualwrite"}, "old"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := ta.do(t, "GET", "/api/users?limit=5", "", c.headers...)
			if r.status != http.StatusOK {
				t.Fatalf("status %d, body %v", r.status, r.body)
			}
			if !contains(c.wantStages, r.stage) || r.served != c.wantServed {
				t.Fatalf("%s = %q, %s = %q; want one of %v served by %s", headerStage, r.stage, headerServed, r.served, c.wantStages, c.wantServed)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Every answer, errors included, names the stage and the endpoint's
// operation; the side only when it answered; errors are JSON with a
// message.
func TestAPIWritesAndErrorsCarryStage(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	tester := "X-User-ID: 123"
	me := ta.do(t, "GET", "/api/me", "", tester)
	if me.status != http.StatusOK || me.body["email"] != "123@demo.pgshift.dev" {
		t.Fatalf("GET /api/me as 123: %d %v", me.status, me.body)
	}
	uid := me.body["id"].(string)

	post := ta.do(t, "POST", "/api/users/"+uid+"/posts", `{"title":"hi","body":"from a test"}`, tester)
	if post.status != http.StatusCreated || post.stage != "live" || post.served != "new" {
		t.Fatalf("create post as tester: %d, stage %q, served %q, %v", post.status, post.stage, post.served, post.body)
	}
	pid := post.body["id"].(string)
	for _, step := range []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/api/users/" + uid, `{"plan":"pro"}`, 405},
		{"GET", "/api/posts/" + pid, "", 200},
		{"PATCH", "/api/posts/" + pid, `{"title":"edited"}`, 200},
		{"GET", "/api/users/" + uid + "/posts", "", 200},
		{"POST", "/api/users/" + uid + "/events", `{"kind":"login"}`, 201},
		{"GET", "/api/users/" + uid + "/events", "", 200},
		{"PATCH", "/api/users/" + uid, `{"plan":"pro"}`, 200},
		{"DELETE", "/api/posts/" + pid, "", 200},
		{"GET", "/api/posts/" + pid, "", 404},
		{"POST", "/api/users", `{"email":"new@example.com","name":"New"}`, 201},
		{"POST", "/api/users", `{"email":"new@example.com","name":"Again"}`, 409},
		{"POST", "/api/users", `{"email":`, 400},
		{"GET", "/api/users/not-a-uuid", "", 400},
		{"GET", "/api/nothing-here", "", 404},
	} {
		r := ta.do(t, step.method, step.path, step.body, tester)
		if r.status != step.want {
			t.Fatalf("%s %s: status %d, want %d (%v)", step.method, step.path, r.status, step.want, r.body)
		}
		wantServed := "new"
		if step.want >= 400 {
			wantServed = "" // no side's answer is in an error
		}
		if r.stage != "live" || r.served != wantServed {
			t.Fatalf("%s %s: stage %q served %q, want live, %q", step.method, step.path, r.stage, r.served, wantServed)
		}
		if wantOp := opOf(step.method, step.path); r.op != wantOp {
			t.Fatalf("%s %s: Pgshift-Op %q, want %q", step.method, step.path, r.op, wantOp)
		}
		if step.want >= 400 {
			if msg, _ := r.body["error"].(string); msg == "" || strings.Contains(msg, "goroutine") {
				t.Fatalf("%s %s: error body %v, want {\"error\": message}", step.method, step.path, r.body)
			}
		}
	}
}

// Rewriting the flag file while the demo runs moves a user to another
// stage without a restart.
func TestFlagFileReloadChangesStage(t *testing.T) {
	t.Parallel()
	ta := setup(t, flagFileFor(flags.StageDualWrite, ruleTesters))
	user := "X-User-ID: " + ta.accounts[3].Key
	if r := ta.do(t, "GET", "/api/me", "", user); r.stage != "dualwrite" || r.served != "old" {
		t.Fatalf("before: stage %q served %q, want dualwrite, old", r.stage, r.served)
	}
	if err := writeFileAtomic(ta.flagsPath, flagFileFor(flags.StageLive)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if r := ta.do(t, "GET", "/api/me", "", user); r.stage != "live" || r.served != "new" {
			return fmt.Sprintf("after rewriting the flag file: stage %q served %q, want live, new", r.stage, r.served)
		}
		return ""
	})
	// An in-place edit (not a rename) is seen as well.
	if err := os.WriteFile(ta.flagsPath, flagFileFor(flags.StageShadow), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() string {
		if r := ta.do(t, "GET", "/api/me", "", user); r.stage != "shadow" {
			return fmt.Sprintf("after editing the flag file: stage %q, want shadow", r.stage)
		}
		return ""
	})
}

func TestAdminEndpointsNeedToken(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	for _, path := range []string{"/admin/verify", "/admin/repair", "/admin/backfill", "/admin/sync-sequences"} {
		if r := ta.do(t, "POST", path, ""); r.status != http.StatusUnauthorized || r.body["error"] == nil {
			t.Fatalf("POST %s without token: %d %v, want 401 with an error", path, r.status, r.body)
		}
		if r := ta.do(t, "POST", path, "", "Authorization: Bearer wrong"); r.status != http.StatusUnauthorized {
			t.Fatalf("POST %s with a wrong token: %d, want 401", path, r.status)
		}
	}
	r := ta.do(t, "POST", "/admin/verify", "", "Authorization: Bearer "+testToken)
	if r.status != http.StatusOK || r.body["equal"] != true {
		t.Fatalf("POST /admin/verify: %d %v, want 200 and equal", r.status, r.body)
	}
}

func TestMetricsAndHealthz(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	ta.do(t, "GET", "/api/me", "", "X-User-ID: 123")
	if r := ta.do(t, "GET", "/healthz", ""); r.status != http.StatusOK || r.body["old"] != "ok" || r.body["new"] != "ok" {
		t.Fatalf("/healthz: %d %v", r.status, r.body)
	} else if fh, _ := r.body["flags"].(map[string]any); fh["usable"] != true || fh["version"] == "" {
		t.Fatalf("/healthz: the flag file's state %v, want usable with a version", r.body["flags"])
	}
	if r := ta.do(t, "GET", "/api/dashboard", ""); r.status != http.StatusOK {
		t.Fatalf("/api/dashboard: %d", r.status)
	} else if fh, _ := r.body["flags_health"].(map[string]any); fh["usable"] != true {
		t.Fatalf("/api/dashboard: flags_health %v, want usable", r.body["flags_health"])
	}
	res, err := http.Get(ta.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`pgshift_demo_requests_total{`, `stage="live"`, `pgshift_dualwrite_duration_seconds`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// /api/gates measures each stage's next step on the two databases: into
// dualwrite holds (pgshift is installed), into shadow waits for backfill and
// verify, and a verify --repair through the admin API clears the verify gate.
func TestGatesPerStage(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	get := func() map[string]nextStep {
		t.Helper()
		res, err := http.Get(ta.url + "/api/gates")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		var steps []nextStep
		if err := json.NewDecoder(res.Body).Decode(&steps); err != nil {
			t.Fatal(err)
		}
		out := map[string]nextStep{}
		for _, s := range steps {
			out[s.Stage] = s
		}
		return out
	}
	blocking := func(s nextStep) []string {
		var names []string
		for _, g := range s.Blocking {
			names = append(names, g.Name)
		}
		return names
	}
	steps := get()
	if len(steps) != 5 || !steps["off"].Ready || steps["off"].Next != "dualwrite" {
		t.Fatalf("gates: %+v; want 5 next steps, off -> dualwrite ready", steps)
	}
	if got := fmt.Sprint(blocking(steps["dualwrite"])); got != "[backfill finished verify equal]" {
		t.Fatalf("dualwrite -> shadow blocked by %s, want backfill and verify", got)
	}
	if r := ta.do(t, "POST", "/admin/verify?repair=true", "", "Authorization: Bearer "+testToken); r.status != http.StatusOK {
		t.Fatalf("verify --repair: %d %v", r.status, r.body)
	}
	time.Sleep(gatesTTL)
	if got := fmt.Sprint(blocking(get()["dualwrite"])); got != "[backfill finished]" {
		t.Fatalf("after verify --repair, dualwrite -> shadow blocked by %s, want backfill only", got)
	}
}

// opOf is the repository operation the API names for an endpoint ("" for
// a request no endpoint takes).
func opOf(method, path string) string {
	parts := strings.Split(strings.TrimPrefix(path, "/api/"), "/")
	switch {
	case method == "PUT" || parts[0] == "nothing-here":
		return ""
	case len(parts) == 3:
		return map[string]string{"GET": parts[2] + ".list_by_user", "POST": parts[2] + ".create"}[method]
	case len(parts) == 1 && method == "GET":
		return "users.list"
	case len(parts) == 1:
		return "users.create"
	}
	return parts[0] + "." + map[string]string{"GET": "get", "PATCH": "update", "DELETE": "delete"}[method]
}

// Request bodies: over 1 MiB is 413, anything after the JSON value is 400,
// both as JSON errors naming the endpoint's operation and no side.
func TestAPIRequestBodyLimits(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	tester := "X-User-ID: 123"
	huge := `{"email":"big@example.com","name":"` + strings.Repeat("x", 1<<20) + `"}`
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"over 1 MiB", huge, http.StatusRequestEntityTooLarge},
		{"trailing garbage", `{"email":"g@example.com","name":"G"} garbage`, http.StatusBadRequest},
		{"two objects", `{"email":"h@example.com","name":"H"}{}`, http.StatusBadRequest},
		{"one object and spaces", "{\"email\":\"ok@example.com\",\"name\":\"Ok\"}\n  ", http.StatusCreated},
	} {
		r := ta.do(t, "POST", "/api/users", c.body, tester)
		if r.status != c.want {
			t.Errorf("%s: status %d, want %d (%v)", c.name, r.status, c.want, r.body)
			continue
		}
		if c.want >= 400 {
			if msg, _ := r.body["error"].(string); msg == "" || r.op != "users.create" || r.served != "" {
				t.Errorf("%s: body %v, op %q, served %q; want a JSON error, op users.create, no side", c.name, r.body, r.op, r.served)
			}
		}
	}
}

// A method a path does not take is a JSON 405 with Allow, on the API and on
// the admin endpoints alike.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	for _, c := range []struct{ method, path, allow string }{
		{"GET", "/admin/verify", "POST"},
		{"DELETE", "/admin/repair", "POST"},
		{"DELETE", "/api/me", "GET, HEAD"},
		{"PUT", "/api/users/0190a5c0-0000-7000-8000-000000000000", "DELETE, GET, HEAD, PATCH"},
		{"POST", "/api/gates", "GET, HEAD"},
	} {
		r := ta.do(t, c.method, c.path, "", "X-User-ID: 123", "Authorization: Bearer "+testToken)
		if msg, _ := r.body["error"].(string); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != c.allow || msg == "" {
			t.Errorf("%s %s: %d, Allow %q, body %v; want 405, Allow %q, a JSON error", c.method, c.path, r.status, r.header.Get("Allow"), r.body, c.allow)
		}
	}
	if r := ta.do(t, "GET", "/api/no-such-thing", "", "X-User-ID: 123"); r.status != http.StatusNotFound {
		t.Errorf("GET /api/no-such-thing: %d, want 404", r.status)
	}
}

// /admin/verify takes ?repair=true or false, refuses anything else, and
// names its numbers as pgshift verify --json does.
func TestAdminVerifyParamsAndNames(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	auth := "Authorization: Bearer " + testToken
	if r := ta.do(t, "POST", "/admin/verify?repair=banana", "", auth); r.status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(r.body["error"]), "banana") {
		t.Fatalf("repair=banana: %d %v, want 400 naming the value", r.status, r.body)
	}
	r := ta.do(t, "POST", "/admin/verify?repair=false", "", auth)
	if r.status != http.StatusOK {
		t.Fatalf("verify: %d %v", r.status, r.body)
	}
	tables, _ := r.body["tables"].([]any)
	if len(tables) == 0 {
		t.Fatalf("verify: no tables in %v", r.body)
	}
	for _, tb := range tables {
		m := tb.(map[string]any)
		name, _ := m["table"].(string)
		_, missing := m["missing_on_new"]
		_, extra := m["extra_on_new"]
		_, different := m["different"]
		if !strings.HasPrefix(name, "public.") || !missing || !extra || !different {
			t.Errorf("verify table %v: want table public.name and missing_on_new, extra_on_new, different", m)
		}
	}
}

// TestDemoStartsWhereItsGatesAllow: the default flag file has testers live
// and cohorts in shadow; once the demo has settled its databases, the gates
// of those stages hold but for traffic, a live and a shadow user both create
// an event (new's ids are past old's: no 409), and a 4xx answer is counted
// as failed on the dashboard.
func TestDemoStartsWhereItsGatesAllow(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	if err := ta.settle(t.Context()); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(ta.url + "/api/gates")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Body.Close() }()
	var steps []nextStep
	if err := json.NewDecoder(res.Body).Decode(&steps); err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		var names []string
		for _, g := range s.Blocking {
			names = append(names, g.Name)
		}
		switch s.Stage {
		case "off", "dualwrite", "live", "rampdown":
			if len(names) > 0 {
				t.Errorf("%s -> %s blocked by %v at start", s.Stage, s.Next, names)
			}
		case "shadow":
			if fmt.Sprint(names) != "[shadow reads]" {
				t.Errorf("shadow -> live blocked by %v at start, want only the shadow reads traffic brings", names)
			}
		}
	}
	for _, who := range []string{"123", "1000"} {
		me := ta.do(t, "GET", "/api/me", "", "X-User-ID: "+who)
		if me.status != http.StatusOK {
			t.Fatalf("GET /api/me as %s: %d %v", who, me.status, me.body)
		}
		ev := ta.do(t, "POST", "/api/users/"+me.body["id"].(string)+"/events", `{"kind":"login"}`, "X-User-ID: "+who)
		if ev.status != http.StatusCreated {
			t.Fatalf("event as %s (%s): %d %v", who, ev.stage, ev.status, ev.body)
		}
	}
	if r := ta.do(t, "POST", "/api/users", `{"email":`, "X-User-ID: 123"); r.status != http.StatusBadRequest {
		t.Fatalf("a bad request: %d", r.status)
	}
	if snap := ta.activity.snapshot(); snap.Failures != 1 {
		t.Errorf("failures counted after one 400: %d, want 1", snap.Failures)
	}
}
