// Command demo shows pgshift moving a running application from one
// PostgreSQL database to another, cohort by cohort, with a live dashboard.
//
//	go run ./demo               # serve the demo application on 127.0.0.1:8080
//	go run ./demo walkthrough   # the whole migration under synthetic load
//
// Without PGSHIFT_OLD_URL and PGSHIFT_NEW_URL it starts two throwaway
// PostgreSQL servers from the local binaries (internal/pglaunch) and stops
// them on exit: on Ctrl-C, SIGTERM or SIGHUP, when the process that started
// it exits (a killed `go run`, which does not pass signals on) and, should
// the demo itself be killed, by their parent-death signal. The stage of each
// user comes from the flagd file demo/flags.json (PGSHIFT_FLAGS names
// another), re-read when it changes,
// or, when PGSHIFT_FLAGS_OFREP (-ofrep) names an OFREP endpoint, from that
// flag server: go-feature-flag's relay proxy serving the same rollout, as
// the README's "Using your flag service" starts it, shows the rollout driven
// remotely. Its decisions are cached for a second.
//
// The application's API takes the caller from request headers, a stand-in
// for real authentication: X-User-ID is the account id and the routing key
// the flags target ("123" and "456" are the testers), X-Country and X-Plan
// the attributes flag rules match (taken from the seeded account when not
// sent). The account with key K owns the users row whose id is
// uuid.NewSHA1(accountNamespace, "account:"+K); GET /api/me returns it.
// Every response names the caller's stage (Pgshift-Stage) and the endpoint's
// repository operation (Pgshift-Op); one that succeeded names the side that
// answered (Pgshift-Served-By). Errors are JSON, {"error": "..."}: a body
// over 1 MiB is a 413, a method a path does not take a 405 with Allow.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/pglaunch"
	"github.com/pgshift/pgshift/internal/redact"
)

// defaultFlags is demo/flags.json, for runs outside the repository.
//
//go:embed flags.json
var defaultFlags []byte

// env is the process's environment, passed in so tests can give their own.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// `go run ./demo` does not pass SIGTERM on: killed, it leaves this
	// program running. Its exit ends the demo as a signal would, so the
	// servers the demo launched stop with it.
	ctx, stopWatch := pglaunch.WithParent(ctx)
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stopWatch()
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e env) int {
	// Everything the demo prints goes through a redactor that knows the
	// connection strings it was given.
	r := redact.New(redact.ConnectionStrings(args, e.getenv)...)
	e.stdout, e.stderr = r.Writer(e.stdout), r.Writer(e.stderr)
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "walkthrough") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, e)
	case "walkthrough":
		var ok bool
		ok, err = walkthrough(ctx, args, e)
		if err == nil && !ok {
			return 1
		}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errStopped), errors.Is(err, context.Canceled):
		fmt.Fprintln(e.stderr, "pgshift demo: stopped")
		return 1
	}
	fmt.Fprintf(e.stderr, "pgshift demo: %v\n", err)
	return 2
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// serve runs the demo application until ctx ends.
func serve(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	addr := fs.String("addr", envOr(e, "PGSHIFT_ADDR", "127.0.0.1:8080"), "listen address (env PGSHIFT_ADDR)")
	flagsPath := fs.String("flags", e.getenv("PGSHIFT_FLAGS"), "flagd flag file (env PGSHIFT_FLAGS; default demo/flags.json)")
	ofrepURL := fs.String("ofrep", e.getenv("PGSHIFT_FLAGS_OFREP"), "OFREP endpoint of a flag server to take the flags from instead of a file, e.g. http://127.0.0.1:1031 (env PGSHIFT_FLAGS_OFREP)")
	users := fs.Int("users", 60, "number of seeded accounts (the two testers included)")
	verbose := fs.Bool("v", false, "log at info level")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: go run ./demo [serve] [flags]  |  go run ./demo walkthrough [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(e.stderr, *verbose)

	path, err := flagSource(*flagsPath, *ofrepURL)
	if err != nil {
		return err
	}
	dbs, err := openDatabases(ctx, e, log)
	if err != nil {
		return err
	}
	defer dbs.close()
	accounts := makeAccounts(*users)
	if err := dbs.prepare(ctx, accounts, true); err != nil {
		return err
	}
	a, err := newApp(ctx, appConfig{
		Old: dbs.old, New: dbs.new, FlagsPath: path, FlagsOFREP: *ofrepURL, Accounts: accounts,
		Token: e.getenv("PGSHIFT_DEMO_TOKEN"), Strict: true, Limits: dbs.gateLimits(), Logger: log,
	})
	if err != nil {
		return err
	}
	defer a.close()
	// The default flag file has cohorts in live and shadow from the start:
	// the databases start where its gates allow that.
	if err := a.settle(ctx); err != nil {
		return err
	}

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set PGSHIFT_ADDR or -addr to another address)", *addr, err)
	}
	warnIfExposed(e.stderr, ln.Addr())
	srv := newServer(a.handler())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	url := "http://" + ln.Addr().String()
	fmt.Fprintf(e.stdout, "pgshift demo: old %s, new %s\n", dbs.describe(flags.SideOld), dbs.describe(flags.SideNew))
	if *ofrepURL != "" {
		fmt.Fprintf(e.stdout, "flags:        OFREP %s (change the flag server's flags: cohorts move within its polling interval plus %v)\n", *ofrepURL, ofrepTTL)
	} else {
		fmt.Fprintf(e.stdout, "flag file:    %s (edit it: cohorts move without a restart)\n", path)
	}
	fmt.Fprintf(e.stdout, "dashboard:    %s/\n", url)
	fmt.Fprintf(e.stdout, "try:          curl -i -H 'X-User-ID: 123' %s/api/me\n", url)
	if e.getenv("PGSHIFT_DEMO_TOKEN") == "" {
		fmt.Fprintf(e.stdout, "admin token:  %s (for POST /admin/verify, /admin/repair, /admin/backfill, /admin/sync-sequences)\n", a.token)
	}
	fmt.Fprintln(e.stdout, "Ctrl-C stops the demo and its databases.")

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	fmt.Fprintln(e.stdout, "pgshift demo: stopping")
	return nil
}

func envOr(e env, key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

// flagSource checks that at most one source of flags is named and returns
// the flag file when the flags do not come from an OFREP endpoint.
func flagSource(file, ofrepURL string) (string, error) {
	if ofrepURL == "" {
		return flagFile(file)
	}
	if file != "" {
		return "", errors.New("both a flag file (PGSHIFT_FLAGS or -flags) and a flag server (PGSHIFT_FLAGS_OFREP or -ofrep) are named: unset one")
	}
	u, err := url.Parse(ofrepURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("OFREP endpoint %q (PGSHIFT_FLAGS_OFREP or -ofrep): want the flag server's base URL, such as http://127.0.0.1:1031", ofrepURL)
	}
	return "", nil
}

// flagFile returns the flag file to use: the one named, else demo/flags.json
// when run from the repository, else a copy of it in a temporary directory.
func flagFile(named string) (string, error) {
	if named != "" {
		if _, err := os.Stat(named); err != nil {
			return "", fmt.Errorf("flag file: %w (PGSHIFT_FLAGS or -flags names it)", err)
		}
		return filepath.Abs(named)
	}
	if _, err := os.Stat(filepath.Join("demo", "flags.json")); err == nil {
		return filepath.Abs(filepath.Join("demo", "flags.json"))
	}
	dir, err := os.MkdirTemp("", "pgshift-demo-flags-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "flags.json")
	return path, os.WriteFile(path, defaultFlags, 0o644)
}
