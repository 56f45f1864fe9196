package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgshift/pgshift/internal/backfill"
)

// progress shows a backfill's progress on stderr: a bar redrawn in place on
// a terminal, a plain line every few seconds otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	every    time.Duration

	mu        sync.Mutex
	start     time.Time
	last      time.Time
	rows      int64
	estimates map[string]int64
	done      map[string]int64
}

func newProgress(w io.Writer, terminal bool) *progress {
	every := 5 * time.Second
	if terminal {
		every = 200 * time.Millisecond
	}
	return &progress{w: w, terminal: terminal, every: every, start: time.Now(), estimates: map[string]int64{}, done: map[string]int64{}}
}

// chunk records a committed chunk and redraws when it is time.
func (p *progress) chunk(c backfill.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := c.Table.String()
	p.rows += c.Rows
	p.done[name] += c.Rows
	p.estimates[name] = c.Estimate
	if c.Done {
		p.estimates[name] = p.done[name] // the real count, now known
	}
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
	if p.terminal {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %d/%d rows %.0f rows/s ETA %s ", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, p.rows, total, rate, eta)
		return
	}
	fmt.Fprintf(p.w, "backfill: %d/%d rows (%.0f%%), %.0f rows/s, ETA %s\n", p.rows, total, frac*100, rate, eta)
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
