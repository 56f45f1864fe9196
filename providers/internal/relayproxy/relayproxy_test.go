package relayproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const staticStage = `pgshift-stage:
  variations:
    live: live
  defaultRule:
    variation: live
`

func writeFlags(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flags.goff.yaml")
	if err := os.WriteFile(path, []byte(staticStage), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// evaluate asks the relay proxy at url for the stage flag over OFREP.
func evaluate(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/ofrep/v1/evaluate/flags/pgshift-stage",
		strings.NewReader(`{"context": {"targetingKey": "123"}}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		Value string `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("status %s: %w", resp.Status, err)
	}
	return body.Value, nil
}

func TestStopRestartClose(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	p, err := Start(ctx, Options{FlagsFile: writeFlags(t), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if v, err := evaluate(ctx, p.URL()); err != nil || v != "live" {
		t.Fatalf("evaluate: %q, %v; want live", v, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "relayproxy.yaml")); err != nil {
		t.Errorf("the configuration is not in Options.Dir: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if pid := p.Pid(); pid != 0 {
		t.Errorf("Pid() = %d after Stop, want 0", pid)
	}
	if _, err := evaluate(ctx, p.URL()); err == nil {
		t.Fatal("a stopped relay proxy answered")
	}
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := evaluate(ctx, p.URL()); err != nil || v != "live" {
		t.Fatalf("evaluate after Restart: %q, %v; want live", v, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := evaluate(ctx, p.URL()); err == nil {
		t.Fatal("a closed relay proxy answered")
	}
}

func TestCloseRemovesItsDirectory(t *testing.T) {
	t.Parallel()
	p, err := Start(t.Context(), Options{FlagsFile: writeFlags(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s after Close: %v, want it removed", p.dir, err)
	}
}

func TestStartNamesAMissingFlagFile(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no-such.yaml")
	_, err := Start(t.Context(), Options{FlagsFile: missing})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Start with a missing flag file: %v, want an error naming %s", err, missing)
	}
	if _, err := Start(t.Context(), Options{}); err == nil || !strings.Contains(err.Error(), "FlagsFile") {
		t.Fatalf("Start without a flag file: %v, want an error naming FlagsFile", err)
	}
}

// TestEndsWithItsParent kills (SIGKILL, no clean-up runs) a process that
// started a relay proxy, and checks that the relay proxy ends too.
func TestEndsWithItsParent(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), "RELAYPROXY_HELPER_FLAGS="+writeFlags(t))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	var url string
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "relay proxy %d %s", &pid, &url); err == nil {
			break
		}
	}
	if pid == 0 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the helper did not report its relay proxy")
	}
	if v, err := evaluate(t.Context(), url); err != nil || v != "live" {
		t.Fatalf("the helper's relay proxy: %q, %v; want live", v, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("relay proxy %d still runs 30s after its parent was killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMain runs the child of TestEndsWithItsParent when asked to: it starts
// a relay proxy, reports it and waits to be killed.
func TestMain(m *testing.M) {
	flagsFile := os.Getenv("RELAYPROXY_HELPER_FLAGS")
	if flagsFile == "" {
		os.Exit(m.Run())
	}
	p, err := Start(context.Background(), Options{FlagsFile: flagsFile})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("relay proxy " + strconv.Itoa(p.Pid()) + " " + p.URL())
	time.Sleep(time.Minute)
	_ = p.Close()
	os.Exit(1)
}
