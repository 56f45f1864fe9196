package main

import (
	"context"
	"embed"
	"io/fs"
	"net/http"
	"time"

	"github.com/pgshift/pgshift/dualwrite"
	"github.com/pgshift/pgshift/flags"
)

// web holds the dashboard: plain HTML, CSS and JS, no build step.
//
//go:embed web
var web embed.FS

// stageRow is one stage's line on the dashboard.
type stageRow struct {
	Stage    string `json:"stage"`
	Old      int64  `json:"old"`
	New      int64  `json:"new"`
	Failed   int64  `json:"failed"`
	Accounts int    `json:"accounts"`
}

// dashboardJSON is what the dashboard polls.
type dashboardJSON struct {
	Now              time.Time         `json:"now"`
	Uptime           float64           `json:"uptime_seconds"`
	FlagsFile        string            `json:"flags_file"`
	FlagsHealth      *flags.FileHealth `json:"flags_health,omitempty"`
	Requests         int64             `json:"requests"`
	Failed           int64             `json:"failed"`
	Stages           []stageRow        `json:"stages"`
	ShadowReads      int64             `json:"shadow_reads"`
	ShadowMismatches int64             `json:"shadow_mismatches"`
	OtherMissed      int64             `json:"other_missed"`
	Repaired         int64             `json:"repaired"`
	Backlog          dualwrite.Backlog `json:"backlog"`
	Recent           []request         `json:"recent"`
	Verify           *verifyReport     `json:"verify"`
	Accounts         []accountStage    `json:"accounts"`
}

// accountStage is a seeded account and the stage the flags put it in now.
type accountStage struct {
	account
	Stage string `json:"stage"`
}

func (a *app) routeDashboard(mux *http.ServeMux) {
	static, _ := fs.Sub(web, "web")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/dashboard", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.dashboard(r.Context()))
	})
}

// accountStages decides the stage of every seeded account now.
func (a *app) accountStages(ctx context.Context) []accountStage {
	out := make([]accountStage, len(a.accounts))
	for i, acc := range a.accounts {
		s := a.stages.Stage(flags.WithUser(ctx, acc.Key, acc.attrs()))
		out[i] = accountStage{account: acc, Stage: s.String()}
	}
	return out
}

func (a *app) dashboard(ctx context.Context) dashboardJSON {
	act := a.activity.snapshot()
	st := a.facade.Stats()
	d := dashboardJSON{
		Now: time.Now(), Uptime: time.Since(a.started).Seconds(),
		FlagsFile: a.flagsPath,
		Requests:  act.Total, Failed: act.Failures,
		ShadowReads: st.ShadowReads, ShadowMismatches: st.ShadowMismatches,
		OtherMissed: st.OtherMissed, Repaired: st.Repaired,
		Backlog: st.Backlog,
		Recent:  act.Recent,
		Verify:  a.verifies.get(),
	}
	if h, ok := a.stages.FileHealth(); ok {
		d.FlagsHealth = &h
	}
	d.Accounts = a.accountStages(ctx)
	counts := map[string]int{}
	for _, acc := range d.Accounts {
		counts[acc.Stage]++
	}
	for _, s := range flags.AllStages() {
		d.Stages = append(d.Stages, stageRow{
			Stage: s.String(), Old: act.Served[s][flags.SideOld], New: act.Served[s][flags.SideNew],
			Failed: act.Failed[s], Accounts: counts[s.String()],
		})
	}
	return d
}
