// Command pgshift is the operator's tool for moving an application from one
// PostgreSQL database ("old") to another ("new") with no downtime: it copies
// the existing rows (backfill), proves both sides hold the same rows
// (verify) and repairs what differs (verify --repair), and moves cohorts of
// users from stage to stage once the gates of the move hold (preflight,
// move).
//
// Run `pgshift help` for the subcommands, `pgshift <command> -h` for one
// command's flags and examples, `pgshift --version` for the version. Exit
// status: 0 done, equal or ready; 1 differences found or not ready; 2 error.
// A password in a connection string never reaches any output. Every
// connection attempt is bounded by --connect-timeout (default 10s). With
// --json, stdout holds one JSON object: the summary, or the error as
// {"command", "error", "exit_status"}; keys are snake_case, tables
// schema.table.
//
// Each subcommand lives in its own file and registers itself in commands
// (see register); common.go holds the flags they share.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"syscall"

	"github.com/pgshift/pgshift/internal/redact"
)

// Exit statuses.
const (
	exitOK          = 0
	exitDifferences = 1
	exitError       = 2
)

// command is one subcommand.
type command struct {
	name string
	// summary is one line for `pgshift help`.
	summary string
	// usage is the text of `pgshift <name> -h` before the flags: synopsis,
	// what it does, examples.
	usage string
	// run runs the command with its arguments (after the name).
	run func(ctx context.Context, e *env, args []string) int
	// tables says the command works on the application's tables: it takes
	// --schema and --table. A command without them refuses those flags.
	tables bool
}

var commands = map[string]*command{}

// register adds a subcommand; each subcommand's file calls it from init.
func register(c *command) { commands[c.name] = c }

// env is what a command talks to: output streams (already redacting),
// environment variables and whether stderr is a terminal.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	terminal       bool

	// json is set by --json; failure is the first error fail printed;
	// printed tells whether the command wrote to stdout. With --json, a
	// command that fails without a summary gets an errorJSON (runWith).
	json    bool
	failure error
	printed *bool
}

// seenWriter writes to w and records that something was written.
type seenWriter struct {
	w    io.Writer
	seen *bool
}

func (s seenWriter) Write(p []byte) (int, error) {
	*s.seen = true
	return s.w.Write(p)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fi, err := os.Stderr.Stat()
	terminal := err == nil && fi.Mode()&os.ModeCharDevice != 0
	os.Exit(runWith(ctx, os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, terminal: terminal}))
}

// run runs pgshift with args (without the program name) as the tests do:
// environment from the process, stderr not a terminal.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, &env{stdout: stdout, stderr: stderr, getenv: os.Getenv})
}

func runWith(ctx context.Context, args []string, e *env) int {
	r := redact.New(redact.ConnectionStrings(args, e.getenv)...)
	printed := new(bool)
	e = &env{stdout: seenWriter{r.Writer(e.stdout), printed}, stderr: r.Writer(e.stderr), getenv: e.getenv, terminal: e.terminal, printed: printed}
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
		fmt.Fprintln(e.stdout, version())
		return exitOK
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				return c.run(ctx, e, []string{"-h"})
			}
		}
		printHelp(e.stdout)
		if len(args) == 0 {
			return exitError
		}
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "pgshift: unknown command %q; run `pgshift help` for the list\n", args[0])
		return exitError
	}
	code := c.run(ctx, e, args[1:])
	if e.json && code == exitError && !*e.printed {
		msg := "failed; see stderr"
		if e.failure != nil {
			msg = e.failure.Error()
		}
		_ = writeJSON(e.stdout, errorJSON{Command: c.name, Error: msg, ExitStatus: code})
	}
	return code
}

// version is pgshift's version line: the module version it was built from
// ("(devel)" for a build in a clone), the commit when the build recorded
// one, and the Go version.
func version() string {
	v := "(unknown)"
	var rev, modified string
	info, ok := debug.ReadBuildInfo()
	if ok {
		v = info.Main.Version
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
	}
	out := "pgshift " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " commit " + rev
		if modified == "true" {
			out += " (modified)"
		}
	}
	return out + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `pgshift moves an application from one PostgreSQL database (old) to another
(new) with no downtime.

Usage:
  pgshift <command> [flags]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-15s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Connection strings come from --old/--new or PGSHIFT_OLD_URL/PGSHIFT_NEW_URL.
Each connection attempt gives up after --connect-timeout (default 10s).
"pgshift --version" prints the version.
Exit status: 0 done, equal or ready; 1 differences found or not ready; 2 error.
Run "pgshift <command> -h" for a command's flags and examples.
`)
}

// newFlagSet is a flag set for command c that prints c's usage and flags on
// -h and errors to stderr.
func newFlagSet(c *command, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet("pgshift "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(e.stderr, c.usage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; ok is false when the command must end with code.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil:
		return exitError, false
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q (flags only; --table names tables)\n", fs.Name(), fs.Arg(0))
		return exitError, false
	}
	return 0, true
}
