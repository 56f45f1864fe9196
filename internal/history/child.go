package history

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
)

// A child process runs one writer's writes through a facade of its own,
// as another instance of the application would, until the controller's
// Kill step SIGKILLs it: whatever its facade held in memory (writes in
// flight, copies not yet applied to the other side, the repair worker's
// pass) is gone, and the guarantee must hold from what the databases hold.
//
// The parent and the child speak JSON lines. The parent sends a childSpec
// first, then a childStage whenever the user's stage changes (the child
// sees changes when facade 1 does); the child answers childReady once its
// facade runs, then a childEvent when each write starts and one when it
// returns, and writes its facade's log on stderr.

// childSpec is what a child needs: where the databases are (through the
// history's proxies, so that outages reach it too), the history and which
// writer it runs, and the history's time zero.
type childSpec struct {
	Server [2]string // the history's databases, as the servers name them
	Proxy  [2]string // host:port of each side's proxy
	T0     int64     // the history's time zero, Unix nanoseconds
	Writer int
	H      History
}

type childStage struct {
	User  int
	Stage flags.Stage
}

// childEvent is a write starting (End zero) or returning.
type childEvent struct {
	Ready   bool          `json:",omitempty"`
	ID      int           `json:",omitempty"`
	Start   time.Duration `json:",omitempty"`
	End     time.Duration `json:",omitempty"`
	Outcome Outcome       `json:",omitempty"`
	Err     string        `json:",omitempty"`
	Res     *result       `json:",omitempty"`
	Stage   [2]flags.Stage
}

// ServeChild is the child's side: it reads the spec from in, runs the
// writer's writes and reports them on out, its facade's log on logw. It
// returns when the writes are done (or in fails).
func ServeChild(ctx context.Context, in io.Reader, out, logw io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(in))
	var spec childSpec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("history child: read the spec: %w", err)
	}
	b := newBoard(spec.H.Stages)
	go func() {
		for {
			var st childStage
			if err := dec.Decode(&st); err != nil {
				return
			}
			b.set(st.User, st.Stage)
		}
	}()
	var pools [2]*pgxpool.Pool
	for side := range pools {
		var err error
		if pools[side], err = proxiedPool(ctx, spec.Server[side], spec.Proxy[side]); err != nil {
			return err
		}
		defer pools[side].Close()
	}
	h := spec.H
	fc := facadeConfig(h, spec.Writer, pools, b, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})))
	f, err := dualwrite.New(ctx, fc)
	if err != nil {
		return err
	}
	defer f.Close()
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	emit := func(e childEvent) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(e)
	}
	emit(childEvent{Ready: true})
	r := &runner{h: h, t0: time.Unix(0, spec.T0)}
	for _, o := range h.Ops {
		if o.Writer != spec.Writer {
			continue
		}
		sleep(ctx, o.Delay)
		rec := r.doWith(ctx, f, b, o, func(start time.Duration) { emit(childEvent{ID: o.ID, Start: start}) })
		e := childEvent{ID: o.ID, Start: rec.Start, End: rec.End, Outcome: rec.Outcome, Err: rec.Err, Stage: rec.Stage}
		if rec.Outcome == Acked {
			e.Res = &rec.Res
		}
		emit(e)
	}
	f.Wait()
	return nil
}

// errKilled is the error of a write the kill cut short.
const errKilled = "the process was SIGKILLed during the write"

// child is a running child process, seen from the parent.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	mu      sync.Mutex
	stdinMu sync.Mutex
	started map[int]time.Duration // writes begun, by op id
	ended   map[int]Record
	done    chan struct{} // closed when the child's output has ended
	killed  bool
}

// startChild runs writer w's writes of r's history in a child process made
// by newCmd, and returns once its facade is up.
func (r *runner) startChild(ctx context.Context, newCmd func() *exec.Cmd, w int, spec childSpec) (*child, error) {
	cmd := newCmd()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logWriter{r.logs, fmt.Sprintf("c%d", w)}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("history: start the child process: %w", err)
	}
	c := &child{cmd: cmd, stdin: stdin, started: map[int]time.Duration{}, ended: map[int]Record{}, done: make(chan struct{})}
	if err := json.NewEncoder(stdin).Encode(spec); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("history: send the child its spec: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		defer close(c.done)
		dec := json.NewDecoder(stdout)
		readyOnce := sync.OnceFunc(func() { close(ready) })
		defer readyOnce()
		for {
			var e childEvent
			if err := dec.Decode(&e); err != nil {
				return
			}
			c.mu.Lock()
			switch {
			case e.Ready:
				readyOnce()
			case e.End == 0:
				c.started[e.ID] = e.Start
			default:
				rec := Record{Start: e.Start, End: e.End, Outcome: e.Outcome, Err: e.Err, Stage: e.Stage}
				if e.Res != nil {
					rec.Res = *e.Res
				}
				c.ended[e.ID] = rec
			}
			c.mu.Unlock()
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
	}
	return c, nil
}

// setStage tells the child a user's new stage.
func (c *child) setStage(u int, s flags.Stage) {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	_ = json.NewEncoder(c.stdin).Encode(childStage{User: u, Stage: s})
}

// kill SIGKILLs the child, and reports whether it was still running
// (it ends by itself once its writes are done).
func (c *child) kill() bool {
	select {
	case <-c.done:
		return false
	default:
	}
	c.mu.Lock()
	c.killed = true
	c.mu.Unlock()
	return c.cmd.Process.Signal(syscall.SIGKILL) == nil
}

// wait waits for the child to end (its writes done, or killed) and returns
// its records: a write that began and did not return (the kill came first)
// is Unknown, and may have taken effect until until.
func (c *child) wait(ops map[int]Op, until time.Duration) ([]Record, error) {
	<-c.done
	_ = c.stdin.Close()
	err := c.cmd.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.killed {
		err = nil
	} else if err != nil {
		err = fmt.Errorf("history: the child process failed: %w", err)
	}
	var recs []Record
	for id, start := range c.started {
		rec, ok := c.ended[id]
		if !ok {
			rec = Record{Start: start, End: until, Outcome: Unknown, Err: errKilled}
		}
		rec.Op = ops[id]
		recs = append(recs, rec)
	}
	if len(c.ended) > len(c.started) {
		err = errors.Join(err, errors.New("history: the child reported writes it never began"))
	}
	return recs, err
}
