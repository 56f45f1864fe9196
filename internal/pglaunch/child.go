package pglaunch

import (
	"context"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
)

// StartChild starts cmd with a parent-death signal, so the child ends with
// this process however it ends (a panic, SIGKILL, a test binary's timeout).
// The signal is tied to the thread that forked the child, so the fork
// happens on a locked thread that lives exactly as long as the child. done
// is closed when the child has exited. Every process pgshift's tests and
// demo start (PostgreSQL, PgBouncer, the providers module's flag server)
// starts here.
func StartChild(cmd *exec.Cmd, deathSignal syscall.Signal) (proc *os.Process, done chan struct{}, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = deathSignal
	started := make(chan error, 1)
	done = make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, nil, err
	}
	return cmd.Process, done, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (a
// child may find it taken when it binds: try another then).
func FreePort() (int, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// LogTail is the last five lines of the log file at path, joined by " | "
// for an error message; "" when it is empty or unreadable.
func LogTail(path string) string {
	b, _ := os.ReadFile(path)
	return LastLines(string(b), 5)
}

// LastLines is the last n lines of s joined by " | ", for an error message
// that quotes a process's output.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
