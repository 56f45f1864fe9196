package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/verify"
)

// progress shows a backfill's or a verify's progress on stderr: a bar
// redrawn in place on a terminal, a plain line every few seconds otherwise,
// a JSON object per line (every second) with --json.
type progress struct {
	w        io.Writer
	what     string // the command, for the plain lines
	terminal bool
	json     bool
	every    time.Duration

	mu        sync.Mutex
	start     time.Time
	last      time.Time
	rows      int64
	estimates map[string]int64
	done      map[string]int64
}

func newProgress(w io.Writer, what string, terminal, asJSON bool) *progress {
	every := 5 * time.Second
	switch {
	case asJSON:
		terminal, every = false, time.Second
	case terminal:
		every = 200 * time.Millisecond
	}
	return &progress{w: w, what: what, terminal: terminal, json: asJSON, every: every, start: time.Now(), estimates: map[string]int64{}, done: map[string]int64{}}
}

// chunk records a backfill's committed chunk.
func (p *progress) chunk(c backfill.Progress) { p.add(c.Table.Qualified(), c.Rows, c.Estimate) }

// compared records rows a verify compared.
func (p *progress) compared(c verify.Progress) { p.add(c.Table.Qualified(), c.Rows, c.Estimate) }

// add records rows of a table done and redraws when it is time.
func (p *progress) add(table string, rows, estimate int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows += rows
	p.done[table] += rows
	p.estimates[table] = estimate
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.draw(now)
	}
}

func (p *progress) draw(now time.Time) {
	var total int64
	for name, e := range p.estimates {
		total += max(e, p.done[name])
	}
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(p.rows) / max(elapsed, 1e-3)
	frac := 1.0
	if total > 0 {
		frac = min(float64(p.rows)/float64(total), 1)
	}
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(total-p.rows) / rate * float64(time.Second)).Round(time.Second).String()
	}
	if p.json {
		etaSeconds := -1.0
		if rate > 0 {
			etaSeconds = float64(total-p.rows) / rate
		}
		_ = json.NewEncoder(p.w).Encode(progressJSON{
			Rows: p.rows, Total: total, Fraction: frac, RowsPerSecond: rate, ETASeconds: etaSeconds,
			ElapsedSeconds: elapsed, Tables: p.tableRows(),
		})
		return
	}
	if p.terminal {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %d/%d rows %.0f rows/s ETA %s ", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, p.rows, total, rate, eta)
		return
	}
	fmt.Fprintf(p.w, "%s: %d/%d rows (%.0f%%), %.0f rows/s, ETA %s\n", p.what, p.rows, total, frac*100, rate, eta)
}

// finish draws the final state and ends the bar's line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(time.Now())
	if p.terminal {
		fmt.Fprintln(p.w)
	}
}

// progressJSON is one line of --json progress on stderr. ETASeconds is -1
// before the rate is known.
type progressJSON struct {
	Rows           int64                    `json:"rows"`
	Total          int64                    `json:"total"`
	Fraction       float64                  `json:"fraction"`
	RowsPerSecond  float64                  `json:"rows_per_second"`
	ETASeconds     float64                  `json:"eta_seconds"`
	ElapsedSeconds float64                  `json:"elapsed_seconds"`
	Tables         map[string]tableProgress `json:"tables"`
}

// tableProgress is one table's rows copied (or compared) by this process
// and its estimated total.
type tableProgress struct {
	Rows  int64 `json:"rows"`
	Total int64 `json:"total"`
}

// tableRows is each table's progress.
func (p *progress) tableRows() map[string]tableProgress {
	out := make(map[string]tableProgress, len(p.estimates))
	for name, e := range p.estimates {
		out[name] = tableProgress{Rows: p.done[name], Total: max(e, p.done[name])}
	}
	return out
}
