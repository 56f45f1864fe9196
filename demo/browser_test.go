package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// browserGroup is a Chromium started in a process group of its own, so that
// all of its processes (the browser, its zygote, renderers and utility
// processes, which write the profile too) can be ended and waited for
// before the test's directories are removed. chromedp waits for the browser
// process only; its children outlive it for a moment, still writing.
type browserGroup struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc // chromedp's allocator: kills and waits for the browser process
}

// start is chromedp's ModifyCmdFunc: a new process group, and the group
// killed with this test binary (chromedp's own default).
func (b *browserGroup) start(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	b.cmd = cmd
}

// end stops the browser and waits until no process of its group is left
// (zombies, which write nothing, excepted: the processes orphaned by the
// browser's exit are reaped by init, whenever it does).
func (b *browserGroup) end(t *testing.T) {
	t.Helper()
	if b.cancel != nil {
		b.cancel()
	}
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	pgid := b.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	// A SIGKILLed process ends at once; the bound only turns a kernel that
	// does not deliver it into a failure rather than a hung test.
	deadline := time.Now().Add(time.Minute)
	for {
		left := liveInGroup(pgid)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("Chromium processes %v of group %d still alive a minute after SIGKILL", left, pgid)
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}

// liveInGroup lists the processes of process group pgid that are not
// zombies, from /proc.
func liveInGroup(pgid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // ended meanwhile
		}
		state, group, err := statFields(b)
		if err != nil || group != pgid || state == "Z" || state == "X" {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pids = append(pids, pid)
	}
	return pids
}

// statFields reads the state and the process group of a /proc/PID/stat
// line: "pid (comm) state ppid pgrp ...", where comm may hold spaces and
// parentheses, so the fields are counted after its last ')'.
func statFields(stat []byte) (state string, pgrp int, err error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return "", 0, errors.New("no comm")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 3 {
		return "", 0, errors.New("short stat")
	}
	pgrp, err = strconv.Atoi(f[2])
	return f[0], pgrp, err
}

// The dashboard, driven in headless Chromium, shows a request made through
// the API in its list of last requests, with the caller's stage and side.
func TestDashboardShowsAPIRequest(t *testing.T) {
	t.Parallel()
	exe := chromiumPath(t)
	ta := setup(t, demoFlags(t))

	profile, tmp := t.TempDir(), t.TempDir()
	browser := &browserGroup{}
	// Registered after the TempDirs, so it runs before they are removed:
	// no Chromium process writes there once this has returned.
	t.Cleanup(func() { browser.end(t) })

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.ModifyCmdFunc(browser.start),
		chromedp.UserDataDir(profile),
		// Chromium puts its shared-memory files in TMPDIR and leaves them.
		chromedp.Env("TMPDIR=" + tmp),
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
		// No crash reporter: its handler runs in a session of its own,
		// outside the group end waits for, and writes to ~/.config.
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-crash-reporter", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser.cancel = cancelAlloc
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
