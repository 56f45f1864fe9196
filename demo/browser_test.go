package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's chromium (or another Chromium-based browser
// named by PGSHIFT_CHROMIUM); a machine without one fails the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PGSHIFT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the dashboard's browser test needs Chromium: apt-get install chromium (or set PGSHIFT_CHROMIUM to its path)")
	return ""
}

// The dashboard, driven in headless Chromium, shows a request made through
// the API in its list of last requests, with the caller's stage and side.
func TestDashboardShowsAPIRequest(t *testing.T) {
	t.Parallel()
	exe := chromiumPath(t)
	ta := setup(t, demoFlags(t))

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium puts its shared-memory files in TMPDIR and leaves them.
		chromedp.Env("TMPDIR=" + t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	// The page loads and draws the stage table.
	if err := chromedp.Run(ctx,
		chromedp.Navigate(ta.url+"/"),
		chromedp.WaitVisible(`#stages tr[data-stage="live"]`, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("load the dashboard: %v", err)
	}

	// A request through the API, from outside the page.
	if r := ta.do(t, "GET", "/api/me", "", "X-User-ID: 456"); r.status != 200 || r.stage != "live" {
		t.Fatalf("GET /api/me as 456: %d, stage %q", r.status, r.stage)
	}

	// It shows up on the page within a few polls, with its stage and side.
	var row string
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`//tbody[@id="recent"]/tr[td[2][starts-with(normalize-space(.), "456")]]`, chromedp.BySearch),
		chromedp.Text(`//tbody[@id="recent"]/tr[td[2][starts-with(normalize-space(.), "456")]]`, &row, chromedp.BySearch),
	); err != nil {
		t.Fatalf("the request did not show up on the dashboard: %v", err)
	}
	for _, want := range []string{"/api/me", "users.get", "live", "new", "200"} {
		if !strings.Contains(row, want) {
			t.Fatalf("dashboard row %q lacks %q", row, want)
		}
	}

	// The page's own form makes a request and shows the stage headers.
	var out string
	if err := chromedp.Run(ctx,
		chromedp.SetValue(`#try-user`, "123", chromedp.ByQuery),
		chromedp.Click(`#try button`, chromedp.ByQuery),
		chromedp.Poll(`document.querySelector("#try-out").textContent.includes("Pgshift-Served-By: new")`, nil, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Text(`#try-out`, &out, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("the page's GET /api/me form: %v", err)
	}
	if !strings.Contains(out, "Pgshift-Stage: live") {
		t.Fatalf("form output %q lacks the stage header", out)
	}

	// The gates panel says what blocks dualwrite -> shadow: nothing is
	// verified in this set-up.
	var gates string
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#gates tr[data-gate="dualwrite"]`, chromedp.ByQuery),
		chromedp.Text(`#gates tr[data-gate="dualwrite"]`, &gates, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("the gates panel: %v", err)
	}
	if !strings.Contains(gates, "verify equal") || !strings.Contains(gates, "never verified") {
		t.Fatalf("gates row dualwrite -> shadow %q does not name the verify gate", gates)
	}
}
