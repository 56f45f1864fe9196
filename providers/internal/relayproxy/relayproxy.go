// Package relayproxy starts go-feature-flag's relay proxy, a flag server that
// many application servers share, for the providers module's tests,
// examples and benchmarks, as the PostgreSQL launcher of pgshift's core
// starts database servers.
//
// The relay proxy is the module's tool (the tool directive in go.mod,
// github.com/thomaspoignant/go-feature-flag/cmd/relayproxy at the version
// go.mod requires). Binary builds it once per process with `go tool -n
// relayproxy`, which leaves the executable in the go build cache, so a
// second test run starts at once and needs no network. A Proxy listens on a
// free port (the relay proxy binds every interface; it is reached on
// 127.0.0.1), reads one flag file with its file retriever, keeps its
// configuration and log in a directory of its own, and runs with an empty
// environment, because the relay proxy reads every environment variable as
// configuration. However the process that started it ends, the relay proxy
// ends with it: it is started by pgshift's launcher (internal/pglaunch,
// StartChild) with a parent-death signal.
package relayproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgshift/pgshift/internal/pglaunch"
)

// ErrBuild is returned (wrapped) when the relay proxy cannot be built.
var ErrBuild = errors.New("cannot build go-feature-flag's relay proxy")

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of the relay proxy executable, building it the
// first time it is called in a process. It must run inside the providers
// module (a test's working directory is).
func Binary() (string, error) {
	build.once.Do(func() { build.path, build.err = goToolPath() })
	return build.path, build.err
}

func goToolPath() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", "relayproxy")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: `go tool -n relayproxy` failed (%w: %s); run `go mod download` in the providers module once with access to the Go module proxy, then run again",
			ErrBuild, err, pglaunch.LastLines(stderr.String(), 3))
	}
	path := strings.TrimSpace(string(out))
	if fi, err := os.Stat(path); err != nil || fi.IsDir() {
		return "", fmt.Errorf("%w: `go tool -n relayproxy` printed %q, which is not an executable; run `go clean -cache` and run again", ErrBuild, path)
	}
	return path, nil
}

// Options configure a relay proxy. FlagsFile is required.
type Options struct {
	// FlagsFile is the go-feature-flag flag file (YAML) the relay proxy
	// serves. The relay proxy re-reads it every PollingInterval.
	FlagsFile string
	// PollingInterval is how often the relay proxy reads FlagsFile again:
	// one second, its minimum, when zero.
	PollingInterval time.Duration
	// Dir holds the relay proxy's configuration and log. When empty, Start
	// makes a temporary directory, which Close removes.
	Dir string
}

// Proxy is one relay proxy, running or stopped. Its methods are safe for
// concurrent use.
type Proxy struct {
	bin, dir string
	ownDir   bool
	port     int

	mu   sync.Mutex
	proc *os.Process
	done chan struct{} // closed when proc has exited
}

// Start starts a relay proxy serving opts.FlagsFile and waits until it
// answers. Close stops it.
func Start(ctx context.Context, opts Options) (*Proxy, error) {
	if opts.FlagsFile == "" {
		return nil, errors.New("relayproxy: Options.FlagsFile is empty: name the go-feature-flag flag file to serve")
	}
	flagsFile, err := filepath.Abs(opts.FlagsFile)
	if err != nil {
		return nil, fmt.Errorf("relayproxy: flag file %s: %w", opts.FlagsFile, err)
	}
	if _, err := os.Stat(flagsFile); err != nil {
		return nil, fmt.Errorf("relayproxy: flag file: %w", err)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	p := &Proxy{bin: bin, dir: opts.Dir}
	if p.dir == "" {
		if p.dir, err = os.MkdirTemp("", "pgshift-relayproxy-"); err != nil {
			return nil, fmt.Errorf("relayproxy: %w", err)
		}
		p.ownDir = true
	}
	interval := opts.PollingInterval
	if interval <= 0 {
		interval = time.Second
	}
	// The port is free when chosen but may be taken before the relay proxy
	// binds it; try another then.
	for attempt := 0; attempt < 5; attempt++ {
		if p.port, err = pglaunch.FreePort(); err != nil {
			continue
		}
		if err = p.writeConfig(flagsFile, interval); err != nil {
			break
		}
		if err = p.Restart(ctx); err == nil {
			return p, nil
		}
	}
	p.removeDir()
	return nil, err
}

func (p *Proxy) configPath() string { return filepath.Join(p.dir, "relayproxy.yaml") }
func (p *Proxy) logPath() string    { return filepath.Join(p.dir, "relayproxy.log") }

func (p *Proxy) writeConfig(flagsFile string, interval time.Duration) error {
	conf := fmt.Sprintf(`# written by pgshift's providers tests (internal/relayproxy)
listen: %d
hideBanner: true
logLevel: error
pollingInterval: %d
retriever:
  kind: file
  path: %s
`, p.port, interval.Milliseconds(), strconv.Quote(flagsFile))
	if err := os.WriteFile(p.configPath(), []byte(conf), 0o600); err != nil {
		return fmt.Errorf("relayproxy: %w", err)
	}
	return nil
}

// URL is the relay proxy's base URL, the OFREP endpoint an OFREP provider
// is given: http://127.0.0.1:port.
func (p *Proxy) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// Restart starts a stopped relay proxy again on the same port and flag file
// and waits until it answers; it does nothing when it runs.
func (p *Proxy) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		return nil
	}
	logFile, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("relayproxy: %w", err)
	}
	defer func() { _ = logFile.Close() }()
	// Not tied to ctx: the relay proxy lives until Stop or Close.
	cmd := exec.CommandContext(context.Background(), p.bin, "--config", p.configPath())
	cmd.Env = []string{} // every variable would be read as configuration
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	proc, done, err := pglaunch.StartChild(cmd, syscall.SIGKILL)
	if err != nil {
		return fmt.Errorf("relayproxy: start %s: %w", p.bin, err)
	}
	if err := p.waitReady(ctx, done); err != nil {
		_ = proc.Kill()
		<-done
		return err
	}
	p.proc, p.done = proc, done
	return nil
}

// waitReady waits until the relay proxy answers its health check, exits or
// 30 seconds pass; errors quote the end of its log.
func (p *Proxy) waitReady(ctx context.Context, done chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p.healthy(ctx, client) {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("relayproxy: exited during start-up (config %s): %s", p.configPath(), p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("relayproxy: waiting for start-up: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("relayproxy: no answer on %s/health after 30s: %s", p.URL(), p.logTail())
		}
	}
}

func (p *Proxy) healthy(ctx context.Context, client *http.Client) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (p *Proxy) logTail() string {
	if tail := pglaunch.LogTail(p.logPath()); tail != "" {
		return tail
	}
	return "its log " + p.logPath() + " is empty"
}

// Stop ends the relay proxy, as a crash or a lost machine would (it keeps no
// state to save), and waits until it has exited. A stopped Proxy refuses
// connections on its port until Restart.
func (p *Proxy) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return nil
	}
	if err := p.proc.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("relayproxy: stop: %w", err)
	}
	<-p.done
	p.proc, p.done = nil, nil
	return nil
}

// Pid is the relay proxy's process id, 0 when it is stopped.
func (p *Proxy) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return 0
	}
	return p.proc.Pid
}

// Close stops the relay proxy and removes the directory Start made.
func (p *Proxy) Close() error {
	err := p.Stop()
	p.removeDir()
	return err
}

func (p *Proxy) removeDir() {
	if p.ownDir {
		_ = os.RemoveAll(p.dir)
	}
}
