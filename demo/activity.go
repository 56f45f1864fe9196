package main

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgshift/pgshift/flags"
)

// recentSize is how many requests the dashboard lists.
const recentSize = 40

// request is one API request as the dashboard shows it.
type request struct {
	At      time.Time `json:"at"`
	Who     string    `json:"who"`
	Country string    `json:"country,omitempty"`
	Plan    string    `json:"plan,omitempty"`
	Method  string    `json:"method"`
	Path    string    `json:"path"`
	Op      string    `json:"op,omitempty"`
	Stage   string    `json:"stage"`
	Side    string    `json:"side"`
	Status  int       `json:"status"`
	Millis  float64   `json:"ms"`
}

// activity counts the API requests by stage and by the side that answered,
// and keeps the last few. It is safe for concurrent use.
type activity struct {
	counter metric.Int64Counter

	mu       sync.Mutex
	served   [numStages][2]int64 // [stage][side]
	failed   [numStages]int64
	total    int64
	failures int64
	seq      int64
	recent   [recentSize]request // ring; recent[seq%recentSize] is next
}

// numStages is the number of migration stages.
const numStages = int(flags.StageComplete) + 1

func newActivity(mp metric.MeterProvider) (*activity, error) {
	c, err := mp.Meter("github.com/pgshift/pgshift/demo").Int64Counter("pgshift.demo.requests",
		metric.WithDescription("API requests of the demo, by stage, side that answered and status class."))
	if err != nil {
		return nil, err
	}
	return &activity{counter: c}, nil
}

// record counts one request. Every answer but a 2xx is a failure: a 409
// where the user expected a 201 is as much a failure to the user as a 500.
func (a *activity) record(ctx context.Context, r request, stage flags.Stage, side flags.Side) {
	failed := r.Status < 200 || r.Status >= 300
	a.counter.Add(ctx, 1, metric.WithAttributes(
		attribute.String("stage", stage.String()),
		attribute.String("side", side.String()),
		attribute.String("status", statusClass(r.Status)),
	))
	a.mu.Lock()
	defer a.mu.Unlock()
	if stage.Valid() {
		a.served[stage][side]++
		if failed {
			a.failed[stage]++
		}
	}
	a.total++
	if failed {
		a.failures++
	}
	a.recent[a.seq%recentSize] = r
	a.seq++
}

func statusClass(code int) string {
	return string(rune('0'+code/100)) + "xx"
}

// activitySnapshot is a copy of the counters at one instant.
type activitySnapshot struct {
	Served   [numStages][2]int64
	Failed   [numStages]int64
	Total    int64
	Failures int64
	// Recent lists the last requests, newest first.
	Recent []request
}

func (a *activity) snapshot() activitySnapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := activitySnapshot{Served: a.served, Failed: a.failed, Total: a.total, Failures: a.failures}
	n := min(a.seq, recentSize)
	s.Recent = make([]request, 0, n)
	for i := int64(1); i <= n; i++ {
		s.Recent = append(s.Recent, a.recent[(a.seq-i)%recentSize])
	}
	return s
}

// servedBy sums requests answered by side over all stages.
func (s activitySnapshot) servedBy(side flags.Side) int64 {
	var n int64
	for _, row := range s.Served {
		n += row[side]
	}
	return n
}
