package history

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Disable turns off the fault classes, modes and kinds of writes named in
// list (comma-separated): "other-fail", "auth-fail", "cancel",
// "cancel-commit", "lose-commit", "hold", "short-timeout", "drain",
// "outage", "late-facade", "backfill", "verify", "kill", "touch", "capture", or a
// kind's name ("swap-u",
// "newrows-insert", ...). It returns an error naming anything it does not
// know.
func (c *Config) Disable(list string) error {
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		switch name {
		case "":
		case "other-fail":
			c.OtherFail = 0
		case "auth-fail":
			c.AuthFail = 0
		case "cancel":
			c.Cancel = 0
		case "cancel-commit":
			c.CancelCommit = 0
		case "lose-commit":
			c.LoseCommit = 0
		case "hold":
			c.Hold = 0
		case "short-timeout":
			c.ShortTimeout = 0
		case "drain":
			c.Drains = false
		case "outage":
			c.Outages = false
		case "late-facade":
			c.LateFacade = false
		case "backfill":
			c.Backfill = 0
		case "verify":
			c.Verify = 0
		case "kill":
			c.Kill = 0
		case "touch":
			c.Touch = false
		case "capture":
			c.Capture = false
		default:
			k := slices.Index(kindNames[:], name)
			if k < 0 {
				return fmt.Errorf("history: cannot disable %q: name a fault class (other-fail, auth-fail, cancel, cancel-commit, lose-commit, hold, short-timeout, drain, outage, late-facade, backfill, verify, kill), a mode (touch, capture) or a kind (%s)",
					name, strings.Join(kindNames[:], ", "))
			}
			if c.Kinds == nil {
				for k := range numKinds {
					c.Kinds = append(c.Kinds, k)
				}
			}
			c.Kinds = slices.DeleteFunc(c.Kinds, func(x Kind) bool { return x == Kind(k) })
		}
	}
	if !c.Touch && !c.Capture {
		return fmt.Errorf("history: touch and capture both disabled: keep one")
	}
	if c.Kinds != nil && len(c.Kinds) == 0 {
		return fmt.Errorf("history: every kind of write disabled: keep one")
	}
	return nil
}

// Fails reports whether a run of h breaks rule.
func (e *Env) Fails(ctx context.Context, h History, rule string) (bool, []Violation, error) {
	run, err := e.Run(ctx, h)
	if err != nil {
		return false, nil, err
	}
	vs := Judge(run)
	for _, v := range vs {
		if v.Rule == rule {
			return true, vs, nil
		}
	}
	return false, vs, nil
}

// Shrink looks for a smaller history that still breaks the rule of v: it
// first keeps only the writes and stage changes of the user that owns v's
// row, then replays with chunks of writes and control steps removed,
// keeping each removal after which a replay still fails, within tries
// replays. Histories are concurrent, so a replay may pass where the
// original failed: the result is the smallest history seen failing (with
// the violations of that run), not a proof of minimality.
func (e *Env) Shrink(ctx context.Context, h History, v Violation, tries int) (History, []Violation, int) {
	used := 0
	var last []Violation
	try := func(c History) bool {
		if used >= tries || ctx.Err() != nil {
			return false
		}
		if c.Backfill && !slices.ContainsFunc(c.Control, func(s Control) bool { return s.Kind == Backfill }) {
			return false // new would lack the seeded rows for good
		}
		used++
		ok, vs, err := e.Fails(ctx, c, v.Rule)
		if err == nil && ok {
			last = vs
			return true
		}
		return false
	}
	if u, ok := rowUser(v.Row); ok {
		c := h
		c.Ops = slices.DeleteFunc(slices.Clone(h.Ops), func(o Op) bool { return o.User != u })
		c.Control = slices.DeleteFunc(slices.Clone(h.Control), func(s Control) bool { return s.Kind == SetStage && s.User != u })
		if len(c.Ops) < len(h.Ops) && len(c.Ops) > 0 {
			for range 3 {
				if try(c) {
					h = c
					break
				}
			}
		}
	}
	for chunk := max(1, (len(h.Ops)+len(h.Control))/2); chunk >= 1 && used < tries; chunk /= 2 {
		for i := 0; i < len(h.Control) && used < tries; {
			c := h
			c.Control = slices.Delete(slices.Clone(h.Control), i, min(i+chunk, len(h.Control)))
			if try(c) {
				h = c
				continue
			}
			i += chunk
		}
		for i := 0; i < len(h.Ops) && used < tries; {
			c := h
			c.Ops = slices.Delete(slices.Clone(h.Ops), i, min(i+chunk, len(h.Ops)))
			if len(c.Ops) > 0 && try(c) {
				h = c
				continue
			}
			i += chunk
		}
	}
	return h, last, used
}

// rowUser is the user that owns a kv or kc row.
func rowUser(row string) (int, bool) {
	table, key, ok := strings.Cut(row, ":")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(key)
	if err != nil {
		return 0, false
	}
	switch table {
	case "kv":
		return n / 100, true
	case "kc":
		return n / 1000, true
	}
	return 0, false
}
