package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgshift/pgshift/internal/backfill"
	"github.com/pgshift/pgshift/internal/rowsync"
	"github.com/pgshift/pgshift/internal/sequences"
	"github.com/pgshift/pgshift/internal/verify"
)

// The operator's side of the demo: backfill, verify, repair and
// sync-sequences, the same library calls `pgshift` makes. Over HTTP they
// need the admin token; the walkthrough calls them directly.

// tableReport is one table's line of a verify, with the names `pgshift
// verify --json` gives the same numbers.
type tableReport struct {
	Table     string `json:"table"`
	Rows      int64  `json:"rows"`
	Missing   int    `json:"missing_on_new"`
	Extra     int    `json:"extra_on_new"`
	Different int    `json:"different"`
	Transient int    `json:"transient"`
	Logged    int    `json:"repair_logged,omitempty"`
	Error     string `json:"error,omitempty"`
}

// verifyReport is the result of one verify over every table.
type verifyReport struct {
	At          time.Time     `json:"at"`
	Repair      bool          `json:"repair"`
	Equal       bool          `json:"equal"`
	Rows        int64         `json:"rows"`
	Differences int           `json:"differences"`
	Tables      []tableReport `json:"tables"`
	Millis      int64         `json:"ms"`
}

// summary is the report in one line.
func (v verifyReport) summary() string {
	var errs []string
	for _, t := range v.Tables {
		if t.Error != "" {
			errs = append(errs, t.Table+": "+t.Error)
		}
	}
	switch {
	case len(errs) > 0:
		return "ERROR " + strings.Join(errs, "; ")
	case v.Equal:
		return fmt.Sprintf("equal (%d tables, %d rows)", len(v.Tables), v.Rows)
	}
	var parts []string
	for _, t := range v.Tables {
		if n := t.Missing + t.Extra + t.Different; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d missing/%d extra/%d different", t.Table, t.Missing, t.Extra, t.Different))
		}
	}
	s := fmt.Sprintf("%d differences: %s", v.Differences, strings.Join(parts, ", "))
	if v.Repair {
		s += " (repaired from old)"
	}
	return s
}

// verifyLog keeps the last verify for the dashboard.
type verifyLog struct {
	mu   sync.Mutex
	last *verifyReport
}

func (l *verifyLog) set(v verifyReport) {
	l.mu.Lock()
	l.last = &v
	l.mu.Unlock()
}

func (l *verifyLog) get() *verifyReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// tables loads every table of the public schema from old's catalog.
func (a *app) tables(ctx context.Context) ([]*rowsync.Table, error) {
	names, err := rowsync.ListTables(ctx, a.old, "public")
	if err != nil {
		return nil, err
	}
	out := make([]*rowsync.Table, 0, len(names))
	for _, n := range names {
		t, err := rowsync.LoadTable(ctx, a.old, "public", n)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// verify compares both databases (and with repair, copies old's rows over
// new's differences) and keeps the report for the dashboard.
func (a *app) verify(ctx context.Context, repair bool, recheck time.Duration) (verifyReport, error) {
	start := time.Now()
	tables, err := a.tables(ctx)
	if err != nil {
		return verifyReport{}, fmt.Errorf("verify: %w", err)
	}
	results, err := verify.Run(ctx, a.old, a.new, tables, verify.Options{
		Workers: len(tables), Repair: repair, RecheckDelay: recheck, Logger: a.log,
	})
	if err != nil {
		return verifyReport{}, fmt.Errorf("verify: %w", err)
	}
	if repair {
		// The one repair path: verify entered the differences in old's
		// repair log; the facade's Repairer copies them under the rows'
		// locks, and a second verify proves the tables equal.
		if _, err := a.facade.Repairer().Drain(ctx); err != nil {
			return verifyReport{}, fmt.Errorf("verify: repair: %w", err)
		}
		logged := map[string]int{}
		for _, r := range results {
			if r.Table != nil {
				logged[r.Table.String()] = r.Logged
			}
		}
		if results, err = verify.Run(ctx, a.old, a.new, tables, verify.Options{Workers: len(tables), RecheckDelay: recheck, Logger: a.log}); err != nil {
			return verifyReport{}, fmt.Errorf("verify after repair: %w", err)
		}
		for i := range results {
			if results[i].Table != nil {
				results[i].Logged = logged[results[i].Table.String()]
			}
		}
	}
	rep := verifyReport{At: start, Repair: repair, Equal: true}
	for _, r := range results {
		t := tableReport{
			Table: r.Table.Qualified(), Rows: r.Rows,
			Missing: r.Missing, Extra: r.Extra, Different: r.Different, Transient: r.Transient,
			Logged: r.Logged,
		}
		if r.Err != nil {
			t.Error = r.Err.Error()
			rep.Equal = false
		}
		rep.Rows += r.Rows
		rep.Differences += r.Differences()
		rep.Tables = append(rep.Tables, t)
	}
	if rep.Differences > 0 {
		rep.Equal = false
	}
	rep.Millis = time.Since(start).Milliseconds()
	a.verifies.set(rep)
	return rep, nil
}

// backfillReport sums a backfill over the tables.
type backfillReport struct {
	Tables   []string `json:"tables"`
	Rows     int64    `json:"rows"`
	Inserted int64    `json:"inserted"`
	Errors   []string `json:"errors,omitempty"`
}

// backfill copies the rows old has and new lacks, parents before children.
func (a *app) backfill(ctx context.Context) (backfillReport, error) {
	tables, err := a.tables(ctx)
	if err != nil {
		return backfillReport{}, fmt.Errorf("backfill: %w", err)
	}
	results, err := backfill.Run(ctx, a.old, a.new, tables, backfill.Options{Workers: 1, Logger: a.log})
	if err != nil {
		return backfillReport{}, fmt.Errorf("backfill: %w", err)
	}
	var rep backfillReport
	for _, r := range results {
		rep.Tables = append(rep.Tables, r.Table.Qualified())
		rep.Rows += r.Rows
		rep.Inserted += r.Inserted
		if r.Err != nil {
			rep.Errors = append(rep.Errors, r.Table.Qualified()+": "+r.Err.Error())
		}
	}
	if len(rep.Errors) > 0 {
		return rep, fmt.Errorf("backfill: %s", strings.Join(rep.Errors, "; "))
	}
	return rep, nil
}

// settle brings databases seeded on both sides into the state the default
// flag file's cohorts need and its gates allow: the backfill recorded (new
// has every row already), new's sequences past old's (so a live user and a
// shadow user never get the same id from the two sides), and a full verify
// recorded equal.
func (a *app) settle(ctx context.Context) error {
	if _, err := a.backfill(ctx); err != nil {
		return err
	}
	if _, err := a.syncSequences(ctx); err != nil {
		return fmt.Errorf("sync-sequences: %w", err)
	}
	rep, err := a.verify(ctx, true, 0)
	if err != nil {
		return err
	}
	if !rep.Equal {
		return fmt.Errorf("verify after seeding: %d differences", rep.Differences)
	}
	return nil
}

// syncSequences moves new's sequences past old's, before new assigns ids.
func (a *app) syncSequences(ctx context.Context) (moved int, err error) {
	res, err := sequences.Sync(ctx, a.old, a.new, "public", sequences.Options{})
	for _, m := range res {
		if m.Moved {
			moved++
		}
	}
	return moved, err
}

func (a *app) routeAdmin(mux *http.ServeMux) {
	mux.Handle("POST /admin/verify", a.admin(func(r *http.Request) (any, error) {
		repair := false
		if s := r.URL.Query().Get("repair"); s != "" {
			var err error
			if repair, err = strconv.ParseBool(s); err != nil {
				return nil, badRequest("repair=%q: want true or false", s)
			}
		}
		return a.verify(r.Context(), repair, 0)
	}))
	mux.Handle("POST /admin/repair", a.admin(func(r *http.Request) (any, error) {
		rep, err := a.facade.Repairer().Drain(r.Context())
		return map[string]any{"repaired_from_old": rep.OldToNew, "repaired_from_new": rep.NewToOld, "failed": rep.Postponed}, err
	}))
	mux.Handle("POST /admin/backfill", a.admin(func(r *http.Request) (any, error) {
		return a.backfill(r.Context())
	}))
	mux.Handle("POST /admin/sync-sequences", a.admin(func(r *http.Request) (any, error) {
		n, err := a.syncSequences(r.Context())
		return map[string]int{"moved": n}, err
	}))
	for _, path := range []string{"/admin/verify", "/admin/repair", "/admin/backfill", "/admin/sync-sequences"} {
		allowOnly(mux, path, "POST")
	}
}

// admin guards an operator endpoint with the token given at start-up
// (Authorization: Bearer <token>).
func (a *app) admin(fn func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			writeJSON(w, http.StatusUnauthorized, errorJSON{"admin endpoints need the token the demo printed at start-up (or PGSHIFT_DEMO_TOKEN): send Authorization: Bearer <token>"})
			return
		}
		body, err := fn(r)
		var ae *apiError
		if errors.As(err, &ae) {
			writeJSON(w, ae.status, errorJSON{ae.msg})
			return
		}
		if err != nil {
			a.log.Error("admin request failed", "path", r.URL.Path, "err", err)
			writeJSON(w, http.StatusInternalServerError, errorJSON{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
}
