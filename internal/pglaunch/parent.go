package pglaunch

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrParentExited is the cause of a context WithParent cancelled.
var ErrParentExited = errors.New("the process that started this one exited")

// parentPoll is how often WithParent looks at the parent process.
const parentPoll = 200 * time.Millisecond

// WithParent returns a copy of ctx that is cancelled, with cause
// ErrParentExited, when the process that started this one exits. It is the
// watchdog of a program that launches servers and is itself run by another
// program that does not pass signals on: `go run` ends on SIGTERM and leaves
// the program it built running. A program that stops its servers when its
// context ends thus stops them when `go run` is killed; the servers' own
// parent-death signal (see StartChild) covers the program being killed.
//
// A process whose parent is already init when WithParent is called (a
// daemon, a container's first process) has nothing to watch; its context
// ends only with ctx.
func WithParent(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	parent := os.Getppid()
	go func() {
		tick := time.NewTicker(parentPoll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// An orphan is adopted by init or by a subreaper: its parent
			// id changes and never changes back.
			if os.Getppid() != parent {
				cancel(ErrParentExited)
				return
			}
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// alive reports whether process pid exists and is not a zombie: a process
// that exited but whose parent has not collected it yet (init reaps orphans
// whenever it does) holds nothing and serves nothing.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		// With /proc, the process ended meanwhile; without, kill's answer
		// stands.
		_, noProc := os.Stat("/proc/self")
		return noProc != nil
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return true
	}
	state := s[i+2]
	return state != 'Z' && state != 'X'
}
