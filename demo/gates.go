package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
)

// gatesTTL is how long the dashboard's gate measurements are reused: they
// read both catalogs and pgshift's tables, too much for every poll.
const gatesTTL = 3 * time.Second

// nextStep is what stands between a stage and the next one: the gates of
// `pgshift preflight --from Stage --to Next`.
type nextStep struct {
	Stage    string         `json:"stage"`
	Next     string         `json:"next"`
	Ready    bool           `json:"ready"`
	Gates    int            `json:"gates"`
	Blocking []cutover.Gate `json:"blocking"`
	Error    string         `json:"error,omitempty"`
}

// gateCache keeps the last measurement of every stage's next step.
type gateCache struct {
	mu    sync.Mutex
	at    time.Time
	steps []nextStep
}

// nextSteps measures, for every stage but complete, the gates into the
// next one, at most once per gatesTTL.
func (a *app) nextSteps(ctx context.Context) []nextStep {
	a.gates.mu.Lock()
	defer a.gates.mu.Unlock()
	if a.gates.steps != nil && time.Since(a.gates.at) < gatesTTL {
		return a.gates.steps
	}
	target := cutover.Target{Old: a.old, New: a.new, Schema: "public"}
	// With a flag file, the gates know whether a cohort is in off now
	// (writing old only). A file the gates cannot read leaves that to
	// pgshift.moves.
	if h, ok := a.stages.FileHealth(); ok {
		if stages, err := (cutover.FlagFile{Path: h.File}).FileStages(); err == nil {
			target.Stages = stages
		}
	}
	var out []nextStep
	for _, s := range flags.AllStages()[:len(flags.AllStages())-1] {
		step := nextStep{Stage: s.String(), Next: (s + 1).String(), Blocking: []cutover.Gate{}}
		rep, err := cutover.Check(ctx, target, s, s+1, a.limits)
		if err != nil {
			// The error may name the database's host, port and user: it
			// goes to the log, and the page says only what failed.
			a.log.Warn("measure the gates", "from", s, "to", s+1, "err", err)
			step.Error = "the gates could not be measured: a database is unreachable or failed (the demo's log says why)"
		} else {
			step.Ready, step.Gates = rep.Ready, len(rep.Gates)
			step.Blocking = append(step.Blocking, rep.Blocking()...)
		}
		out = append(out, step)
	}
	a.gates.at, a.gates.steps = time.Now(), out
	return out
}

func (a *app) routeGates(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/gates", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.nextSteps(r.Context()))
	})
}
