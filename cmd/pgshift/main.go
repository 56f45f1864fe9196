// Command pgshift is the operator's tool for moving an application from one
// PostgreSQL database ("old") to another ("new") with no downtime: it copies
// the existing rows (backfill), proves both sides hold the same rows
// (verify) and repairs what differs (verify --repair), and moves cohorts of
// users from stage to stage once the gates of the move hold (preflight,
// move).
//
// Run `pgshift help` for the subcommands and `pgshift <command> -h` for one
// command's flags and examples. Exit status: 0 done, equal or ready; 1
// differences found or not ready; 2 error. A password in a connection string
// never reaches any output.
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
	e = &env{stdout: r.Writer(e.stdout), stderr: r.Writer(e.stderr), getenv: e.getenv, terminal: e.terminal}
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
	return c.run(ctx, e, args[1:])
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
