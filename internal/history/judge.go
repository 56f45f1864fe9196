package history

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// The rules Judge checks.
const (
	// RuleSidesEqual: after the drain both sides hold the same rows.
	RuleSidesEqual = "sides-equal"
	// RuleLogsDrained: the drain empties both repair logs.
	RuleLogsDrained = "logs-drained"
	// RuleOneDrain: once traffic has stopped and faults are healed, one
	// Drain settles every entry (nothing postponed: parents before
	// children, unique values reused, all in one call).
	RuleOneDrain = "one-drain-settles-all"
	// RuleFromAWrite: every row holds the value some write wrote to it,
	// whole (no value of an unknown write, of a write of another row, or
	// half of one write and half of another).
	RuleFromAWrite = "value-from-a-write"
	// RuleFailedInvisible: no row holds the effect of a write the caller
	// was told failed (a plain error), unless a later write replaced it.
	RuleFailedInvisible = "failed-write-invisible"
	// RuleAckNotReplaced: no acknowledged write is replaced by an older
	// state (see Judge).
	RuleAckNotReplaced = "acknowledged-write-not-replaced-by-older-state"
	// RuleNoLockError: no caller gets a deadlock from pgshift's own locking.
	RuleNoLockError = "no-deadlock-from-pgshift-locking"
	// RuleToolsSucceed: backfill and verify --repair, run beside the
	// writers on connections no fault touches, finish without an error.
	RuleToolsSucceed = "tools-succeed"
)

// Violation is one broken rule, about one row (or none).
type Violation struct {
	Rule   string
	Row    string
	Detail string
}

func (v Violation) String() string {
	if v.Row == "" {
		return v.Rule + ": " + v.Detail
	}
	return v.Rule + ": row " + v.Row + ": " + v.Detail
}

// Judge checks a run against the rules and returns what it broke.
//
// What it concludes, and from what: every write writes a value that names
// it (v = "o<id>"), so a row's final value names the write it came from.
// The write's outcome is what the caller was told: acknowledged (nil),
// failed (a plain error: known not to have committed), unknown
// (ErrCommitUnknown). Real time stands in for lock order: if write A
// returned before write B started, every correct execution orders A's lock
// of a row they share before B's. So when an acknowledged write B
// definitely changed a row (its RETURNING named the row on the
// authoritative side) and the row's final state can be explained only by
// writes that all ended before B started (the write whose value it holds;
// for an absent row, the deletes of it or of its parent that were not
// reported failed, and its absence at the start), B was replaced by an
// older state: a lost acknowledged write.
//
// What it cannot conclude: the order of writes whose real-time intervals
// overlap (either may hold the row's lock last), so it never flags a final
// state that some overlapping write explains; the effect of unknown
// writes (they may or may not have committed; they explain a state but are
// never required to); the effect of an acknowledged write on a row its
// statement did not report (an update that found no row, a cascade); and
// anything about the states between the start and the end (reads are not
// checked).
func Judge(run *Run) []Violation {
	var out []Violation
	seen := map[string]bool{}
	add := func(v Violation) {
		k := v.Rule + "\x00" + v.Row
		if !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	ix := index(run)
	rows := map[string]bool{}
	for side := range run.Final {
		for id := range run.Final[side] {
			rows[id] = true
		}
	}
	for id := range ix.touched {
		rows[id] = true
	}
	ids := sortedKeys(rows)
	for _, id := range ids {
		o, oOK := run.Final[0][id]
		n, nOK := run.Final[1][id]
		if oOK != nOK || o != n {
			add(Violation{RuleSidesEqual, id, fmt.Sprintf("old holds %s, new holds %s", showRow(o, oOK), showRow(n, nOK))})
		}
	}
	for side, left := range run.Leftover {
		if len(left) > 0 {
			add(Violation{Rule: RuleLogsDrained, Detail: fmt.Sprintf("%d entries left on %s after the drain (%s), e.g. %s",
				len(left), []string{"old", "new"}[side], run.DrainErr, strings.Join(left[:min(3, len(left))], "; "))})
		}
	}
	if run.FirstDrain.Postponed > 0 || run.FirstDrainErr != "" {
		add(Violation{Rule: RuleOneDrain, Detail: fmt.Sprintf("the first drain after the traffic postponed %d entries (%+v, err %q)",
			run.FirstDrain.Postponed, run.FirstDrain, run.FirstDrainErr)})
	}
	for _, e := range run.Tools.Errs {
		add(Violation{Rule: RuleToolsSucceed, Detail: e})
	}
	for _, rec := range run.Records {
		if strings.Contains(rec.Err, "40P01") && strings.Contains(rec.Err, "lock rows") {
			add(Violation{Rule: RuleNoLockError, Detail: fmt.Sprintf("write #%d: %s", rec.Op.ID, rec.Err)})
		}
	}
	for side := range run.Final {
		for _, id := range ids {
			row, ok := run.Final[side][id]
			for _, v := range ix.judgeRow(id, row, ok) {
				v.Detail += " (on " + []string{"old", "new"}[side] + ")"
				add(v)
			}
		}
	}
	return out
}

func showRow(r Row, ok bool) string {
	if !ok {
		return "nothing"
	}
	return r.String()
}

func (r Row) String() string {
	s := "v=" + r.V
	if r.U != "" {
		s += " u=" + r.U
	}
	if r.Parent != 0 {
		s += " k=" + strconv.Itoa(r.Parent)
	}
	return s
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// initial stands for the state before the history: seeded rows, absent
// others; it ended at time zero.
var initial = &Record{Op: Op{ID: 0}, Outcome: Acked}

// effect is what one write may do to one row.
type effect struct {
	rec      *Record
	del      bool
	want     Row
	checkU   bool // kv: u is the write's (not kept)
	definite bool // the authoritative side reported the row changed, and the caller was told success
	// at is a time at which the write held the row's lock, or an instant
	// before it took the lock: set for definite effects (see lockedAt).
	at time.Duration
}

// lockedAt is when rec is known to have held (or been about to take) the
// lock of row id on its authoritative side: when its statement there had
// returned, its COMMIT not yet sent, or its start when the facade may have
// sent the COMMIT with the statement (a OneStatement write while old is
// authoritative, in off and complete, and a NewRows insert: the answer read
// after the server committed, and a later writer of the row may have
// committed before the caller read it).
func lockedAt(rec *Record, id string) time.Duration {
	commitWaits := !rec.Op.OneStatement ||
		rec.Op.Kind != NewRowsInsert && newAuthoritative(rec.Stage[0]) && newAuthoritative(rec.Stage[1])
	if !commitWaits {
		return rec.Start
	}
	return max(rec.Start, rec.Res.At[id])
}

// newAuthoritative says whether a dual write under stage holds new's
// transaction open across old's (live, rampdown).
func newAuthoritative(stage flags.Stage) bool {
	return stage == flags.StageLive || stage == flags.StageRampdown
}

type runIndex struct {
	byTag   map[string]*Record
	seeded  map[string]bool
	touched map[string][]effect // row id -> what writes may do to it
}

func index(run *Run) *runIndex {
	ix := &runIndex{byTag: map[string]*Record{}, seeded: map[string]bool{}, touched: map[string][]effect{}}
	for _, k := range run.History.Seeded {
		ix.seeded[kvID(k)] = true
	}
	for i := range run.Records {
		rec := &run.Records[i]
		o := rec.Op
		ix.byTag[o.Tag()] = rec
		acked := rec.Outcome == Acked
		put := func(id string, e effect) {
			e.rec = rec
			if e.definite {
				e.at = lockedAt(rec, id)
			}
			ix.touched[id] = append(ix.touched[id], e)
		}
		kvWrite := func(k int, u string, checkU bool) {
			put(kvID(k), effect{want: Row{V: o.Tag(), U: u}, checkU: checkU, definite: acked && slices.Contains(rec.Res.Keys, k)})
		}
		switch o.Kind {
		case Insert, Update, Upsert, ParentChildren:
			kvWrite(o.Keys[0], o.U[0], true)
		case UpdateTwo, TwoStep:
			kvWrite(o.Keys[0], "", false)
			kvWrite(o.Keys[1], "", false)
		case SwapU, UpsertMany:
			kvWrite(o.Keys[0], o.U[0], true)
			kvWrite(o.Keys[1], o.U[1], true)
		case Delete:
			k := o.Keys[0]
			put(kvID(k), effect{del: true, definite: acked && slices.Contains(rec.Res.Keys, k)})
			for c := range ChildrenPerKey {
				put(kcID(k*10+c), effect{del: true}) // a cascade: never definite
			}
		case ChildInsert:
			put(kcID(o.Child), effect{want: Row{V: o.Tag(), Parent: o.Keys[0]}, definite: acked && slices.Contains(rec.Res.Children, o.Child)})
		case ChildUpdate:
			put(kcID(o.Child), effect{want: Row{V: o.Tag(), Parent: o.Child / 10}, definite: acked && slices.Contains(rec.Res.Children, o.Child)})
		case ChildDelete:
			put(kcID(o.Child), effect{del: true, definite: acked && slices.Contains(rec.Res.Children, o.Child)})
		case NewRowsInsert:
			put("ev:"+o.EvID.String(), effect{want: Row{V: o.Tag(), U: evU(o)}, definite: acked})
		case SerialInsert:
			if acked {
				put(fmt.Sprintf("sq:%d", rec.Res.ID), effect{want: Row{V: o.Tag()}, definite: true})
			}
		}
		if o.Kind == ParentChildren {
			for _, c := range o.Children {
				put(kcID(c), effect{want: Row{V: o.Tag(), Parent: o.Keys[0]}, definite: acked && slices.Contains(rec.Res.Children, c)})
			}
		}
	}
	return ix
}

func kvID(k int) string { return "kv:" + strconv.Itoa(k) }
func kcID(c int) string { return "kc:" + strconv.Itoa(c) }

func describe(rec *Record) string {
	if rec == initial {
		return "the state before the history"
	}
	s := fmt.Sprintf("write #%d (%s, %s, ran %v..%v, stages %v/%v)", rec.Op.ID, rec.Op.Kind, rec.Outcome,
		rec.Start.Round(time.Millisecond), rec.End.Round(time.Millisecond), rec.Stage[0], rec.Stage[1])
	if rec.Settled > rec.End {
		s = strings.TrimSuffix(s, ")") + fmt.Sprintf(", its server answered until %v)", rec.Settled.Round(time.Millisecond))
	}
	if rec.Err != "" {
		s += ": " + rec.Err
	}
	return s
}

// judgeRow checks one row's final state on one side.
func (ix *runIndex) judgeRow(id string, row Row, present bool) []Violation {
	effects := ix.touched[id]
	var explain []*Record // writes (or initial) whose effect the final state is
	var failedExplain []*Record
	var holder *Record
	if present {
		switch {
		case row.V == "seed" && ix.seeded[id]:
			holder = initial
		default:
			rec := ix.byTag[row.V]
			var e *effect
			for i := range effects {
				if effects[i].rec == rec && !effects[i].del {
					e = &effects[i]
				}
			}
			if e == nil && rec != nil && rec.Op.Kind == SerialInsert && strings.HasPrefix(id, "sq:") {
				// The key of a serial insert that was not acknowledged is
				// known only from the row itself.
				e = &effect{rec: rec, want: Row{V: rec.Op.Tag()}}
			}
			if rec == nil || e == nil {
				return []Violation{{RuleFromAWrite, id, fmt.Sprintf("holds %s, which no write wrote to this row", row)}}
			}
			if (e.checkU && row.U != e.want.U) || (e.want.Parent != 0 && row.Parent != e.want.Parent) {
				return []Violation{{RuleFromAWrite, id, fmt.Sprintf("holds %s, but %s wrote %s", row, describe(rec), e.want)}}
			}
			holder = rec
			if rec.Outcome == Failed {
				return []Violation{{RuleFailedInvisible, id, fmt.Sprintf("holds %s, the value of %s", row, describe(rec))}}
			}
		}
		explain = []*Record{holder}
	} else {
		if !ix.seeded[id] {
			explain = append(explain, initial)
		}
		for _, e := range effects {
			switch {
			case !e.del:
			case e.rec.Outcome == Failed:
				failedExplain = append(failedExplain, e.rec)
			default:
				explain = append(explain, e.rec)
			}
		}
	}
	latest := time.Duration(-1)
	for _, r := range explain {
		latest = max(latest, r.end())
	}
	// The latest-starting acknowledged write that definitely changed the
	// row and started after everything that explains the state ended.
	var lost *effect
	for i := range effects {
		e := &effects[i]
		if !e.definite || e.rec == holder || (!present && e.del) {
			continue
		}
		if e.at > latest && (lost == nil || e.at > lost.at) {
			lost = e
		}
	}
	if lost == nil {
		return nil
	}
	state := "is absent"
	if present {
		state = "holds " + row.String()
	}
	what := "wrote " + lost.want.String()
	if lost.del {
		what = "deleted it"
	}
	for _, f := range failedExplain {
		if f.End >= lost.at {
			return []Violation{{RuleFailedInvisible, id, fmt.Sprintf("%s: only %s explains that, after %s %s", state, describe(f), describe(lost.rec), what)}}
		}
	}
	var why []string
	for _, r := range explain {
		why = append(why, describe(r))
	}
	return []Violation{{RuleAckNotReplaced, id, fmt.Sprintf("%s, yet %s %s (holding its lock at %v) after every write that explains that state had ended: %s",
		state, describe(lost.rec), what, lost.at.Round(time.Millisecond), strings.Join(why, "; "))}}
}
