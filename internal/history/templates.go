package history

import (
	"time"

	"github.com/google/uuid"

	"github.com/pgshift/pgshift/flags"
)

// Template is a hand-written history for one proven case of issues 18 and
// 24. Its timing (delays, holds, lags) lays the case out; like every
// history it runs concurrently, so a run shows the case, not a proof that
// each run does.
type Template struct {
	History History
	// Case names the issue case it reproduces.
	Case string
}

const ms = time.Millisecond

// Templates are the deterministic histories of the proven cases. Writers
// with an even index go through facade 0, odd ones through facade 1.
func Templates() []Template {
	base := func(name string, stages ...flags.Stage) History {
		return History{Name: name, OtherTimeout: time.Second, Grace: [2]time.Duration{300 * ms, 300 * ms}, Stages: stages}
	}
	both := func(delay time.Duration, user int, s flags.Stage) Control {
		return Control{Kind: SetStage, Delay: delay, User: user, Stage: s}
	}
	var out []Template

	// Issue 18 case 1: W2 (shadow) locks X and waits; the flip to live; W1
	// locks R, commits on new, its old write fails; W2 then locks R, writes
	// it on old, commits, its follow on new fails. W2 is acknowledged and
	// held R's lock last.
	h := base("flip-lock-wait", flags.StageShadow)
	h.Seeded = []int{0, 1}
	h.Ops = []Op{
		{ID: 1, Writer: 1, Kind: TwoStep, Keys: []int{0, 1}, Hold: 300 * ms, Other: FailLate},
		{ID: 2, Writer: 0, Kind: Update, Keys: []int{1}, U: []string{""}, Delay: 100 * ms, Other: FailEarly},
	}
	h.Control = []Control{both(50*ms, 0, flags.StageLive)}
	out = append(out, Template{h, "issue 18 case 1: repair order across an authority flip (k_xid taken at the first lock)"})

	// Issue 18 case 2: A's follow on new fails in shadow (an authoritative
	// entry on old); flip to live; B succeeds on both; P commits on old
	// with its pull entry and its caller is cancelled before new's COMMIT
	// (a plain error). Repair must neither keep P nor lose B.
	h = base("pull-vs-older-entry", flags.StageShadow)
	h.Seeded = []int{0}
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: Update, Keys: []int{0}, U: []string{""}, Other: FailEarly},
		{ID: 2, Writer: 0, Kind: Update, Keys: []int{0}, U: []string{""}, Delay: 80 * ms},
		{ID: 3, Writer: 0, Kind: Update, Keys: []int{0}, U: []string{""}, Delay: 20 * ms, Commit: CancelAtCommit, CommitSide: flags.SideOld},
	}
	h.Control = []Control{both(40*ms, 0, flags.StageLive)}
	out = append(out, Template{h, "issue 18 case 2: a pull entry loses to an older authoritative entry"})

	// Issue 24 case 1: the caller's context is cancelled while the results
	// of a batch that carried the COMMIT are read: a delete, an update and
	// a NewRows insert, each OneStatement, in dualwrite and in live.
	for _, st := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		auth := st.Plan().Authoritative
		h = base("cancel-commit-batch-"+st.String(), st)
		h.Seeded = []int{0, 1}
		h.Ops = []Op{
			{ID: 1, Writer: 0, Kind: Delete, Keys: []int{0}, OneStatement: true, Commit: CancelAtCommit, CommitSide: auth},
			{ID: 2, Writer: 0, Kind: Update, Keys: []int{1}, U: []string{"u0.1"}, Delay: 20 * ms, Other: FailEarly, Commit: CancelAtCommit, CommitSide: auth},
			{ID: 3, Writer: 0, Kind: NewRowsInsert, EvID: uuid.MustParse("018bfe23-949c-7a5a-a0c5-476351cfbcc2"), Delay: 20 * ms, Commit: CancelAtCommit, CommitSide: auth},
		}
		out = append(out, Template{h, "issue 24 case 1: errors that lie (cancelled while reading a COMMIT-carrying batch)"})
	}

	// Issue 24 case 2: facade 0 sees rampdown, facade 1 still dualwrite.
	// W2 (dualwrite) updates kv1 first, its transactions begun; W1
	// (rampdown) commits kv0 on new, its old write fails; W3 (rampdown)
	// holds kv0's lock on new and then fails; W2, after W1 was
	// acknowledged, times out on kv0's lock, writes it on old without the
	// lock and is acknowledged.
	h = base("lock-timeout-across-authorities", flags.StageDualWrite)
	h.Seeded = []int{0, 1}
	h.Ops = []Op{
		{ID: 1, Writer: 1, Kind: TwoStep, Keys: []int{1, 0}, Hold: 150 * ms},
		{ID: 2, Writer: 0, Kind: Update, Keys: []int{0}, U: []string{""}, Delay: 20 * ms, Other: FailEarly},
		{ID: 3, Writer: 2, Kind: Update, Keys: []int{0}, U: []string{""}, Delay: 80 * ms, Hold: 1500 * ms, Auth: FailLate},
	}
	h.Control = []Control{{Kind: SetStage, User: 0, Stage: flags.StageRampdown, Lag: 2500 * ms}}
	out = append(out, Template{h, "issue 24 case 2: a lock that timed out, the write goes on, repair undoes it"})

	// Issue 24 case 3: NewRows inserts whose authoritative side commits
	// late, with repair workers of 1 ms grace and drains running at once.
	for _, st := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		h = base("newrows-drain-"+st.String(), st)
		h.Grace = [2]time.Duration{ms, ms}
		for i := range 4 {
			h.Ops = append(h.Ops, Op{ID: i + 1, Writer: i % 2, Kind: NewRowsInsert, Hold: 150 * ms, Delay: time.Duration(i) * 10 * ms,
				EvID: uuid.MustParse([]string{"018bfe23-949c-7a5a-a0c5-476351cfbc01", "018bfe23-949c-7a5a-a0c5-476351cfbc02",
					"018bfe23-949c-7a5a-a0c5-476351cfbc03", "018bfe23-949c-7a5a-a0c5-476351cfbc04"}[i])})
		}
		h.Control = []Control{{Kind: Drain, Delay: 60 * ms}, {Kind: Drain, Delay: 30 * ms}, {Kind: Drain, Delay: 30 * ms}}
		out = append(out, Template{h, "issue 24 case 3: NewRows and a repair worker with a short grace"})
	}

	// Issue 24 case 4: parent P deleted in shadow, new's copy failing into
	// the repair log; flip to live; a child of P inserted in live (new
	// still has P) and acknowledged; repair then deletes P on new and the
	// cascade takes the child.
	h = base("flip-over-backlog-cascade", flags.StageShadow)
	h.Seeded = []int{0}
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: Delete, Keys: []int{0}, Other: FailEarly},
		{ID: 2, Writer: 0, Kind: ChildInsert, Keys: []int{0}, Child: 0, Delay: 60 * ms},
		{ID: 3, Writer: 0, Kind: Upsert, Keys: []int{0}, U: []string{""}, Delay: 400 * ms},
	}
	h.Control = []Control{both(30*ms, 0, flags.StageLive)}
	out = append(out, Template{h, "issue 24 case 4: a flip over a backlog (parent deleted in shadow, child inserted in live)"})

	// Two processes serve one user under two authorities: facade 0 sees
	// live, facade 1 still shadow. W1 (shadow) inserts kv0 with u on old and
	// holds its COMMIT; W2 (live) inserts kv1 with the same u on new, its
	// old copy waiting behind W1's uncommitted u. Unfenced, both were
	// acknowledged with one unique value; the fence on new (key_authority)
	// refuses W2 while W1 holds the user's authority.
	h = base("two-authorities-unique", flags.StageShadow)
	h.Ops = []Op{
		{ID: 1, Writer: 1, Kind: Insert, Keys: []int{0}, U: []string{"u0.7"}, Delay: 40 * ms, Hold: 400 * ms},
		{ID: 2, Writer: 0, Kind: Insert, Keys: []int{1}, U: []string{"u0.7"}, Delay: 120 * ms},
	}
	h.Control = []Control{{Kind: SetStage, Delay: 20 * ms, User: 0, Stage: flags.StageLive, Lag: 2000 * ms}}
	out = append(out, Template{h, "two facades serve a user under both authorities (unique value acknowledged twice)"})

	// A flip while the previous authority is down (seed 8628): an insert in
	// shadow whose copy new misses (its entry on old); the user flips to
	// live and old goes down; an update of the row under live. Served on
	// new, the update found no row there and its entry later copied
	// "absent" over the acknowledged insert; the user's calls are refused
	// (ErrNotCaughtUp) until old answers.
	h = base("flip-previous-authority-down", flags.StageShadow)
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: Insert, Keys: []int{0}, U: []string{""}, Other: FailEarly},
		{ID: 2, Writer: 0, Kind: Update, Keys: []int{0}, U: []string{""}, Delay: 100 * ms},
	}
	h.Control = []Control{both(20*ms, 0, flags.StageLive), {Kind: Outage, Delay: 10 * ms, Side: flags.SideOld, Lag: 500 * ms}}
	out = append(out, Template{h, "a flip while the previous authority is down (an update on a state missing an acknowledged insert)"})

	// A rollback while new is down (seed 58): an upsert in live with u
	// whose copy old misses (its entry on new); the user is rolled back to
	// shadow and new goes down; an upsert of another row with the same u.
	// Served on old alone, both were acknowledged with one unique value;
	// old's mark says new served the user, so the call is refused.
	h = base("rollback-new-down-unique", flags.StageLive)
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: Upsert, Keys: []int{0}, U: []string{"u0.5"}, Other: FailEarly},
		{ID: 2, Writer: 0, Kind: Upsert, Keys: []int{1}, U: []string{"u0.5"}, Delay: 100 * ms},
	}
	h.Control = []Control{both(20*ms, 0, flags.StageShadow), {Kind: Outage, Delay: 10 * ms, Side: flags.SideNew, Lag: 500 * ms}}
	out = append(out, Template{h, "a rollback while new is down (a unique value acknowledged under both authorities)"})

	// A user's first flip while old is down (seed 21152): an upsert in
	// shadow with u while new is down goes on old's fence (its entry on
	// old, no record of the user on new); new comes back, the user flips
	// to live and old goes down; an upsert of another row with the same u.
	// Served on new as a first move, both were acknowledged with one unique
	// value; the user's calls are refused until old answers.
	h = base("first-flip-old-down-unique", flags.StageShadow)
	h.Grace = [2]time.Duration{2 * time.Second, 2 * time.Second}
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: Upsert, Keys: []int{0}, U: []string{"u0.3"}, Delay: 20 * ms},
		{ID: 2, Writer: 0, Kind: Upsert, Keys: []int{1}, U: []string{"u0.3"}, Delay: 330 * ms},
	}
	h.Control = []Control{{Kind: Outage, Side: flags.SideNew, Lag: 150 * ms}, both(100*ms, 0, flags.StageLive),
		{Kind: Outage, Delay: 10 * ms, Side: flags.SideOld, Lag: 500 * ms}}
	out = append(out, Template{h, "a user's first flip while old is down (a unique value acknowledged under both authorities)"})

	// Issue 18 case 5: new misses a delete of a row holding u = a and an
	// insert of another row with u = a; and a swap of two values.
	h = base("unique-reuse", flags.StageDualWrite)
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: Upsert, Keys: []int{0}, U: []string{"u0.0"}},
		{ID: 2, Writer: 0, Kind: Upsert, Keys: []int{2}, U: []string{"u0.1"}},
		{ID: 3, Writer: 0, Kind: Upsert, Keys: []int{3}, U: []string{"u0.2"}},
		{ID: 4, Writer: 0, Kind: Delete, Keys: []int{0}, Other: FailEarly},
		{ID: 5, Writer: 0, Kind: Insert, Keys: []int{1}, U: []string{"u0.0"}, Other: FailEarly},
		{ID: 6, Writer: 0, Kind: SwapU, Keys: []int{2, 3}, U: []string{"u0.2", "u0.1"}, Other: FailEarly},
	}
	out = append(out, Template{h, "issue 18 case 5: repair of a delete and an insert reusing a unique value (and a swap)"})

	// Issue 18 case 6: a parent and its children written while new is down
	// (its statements fail), capture on, no Touch; then repair.
	h = base("parent-children-new-down", flags.StageDualWrite)
	h.Capture = true
	h.Seeded = []int{0}
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: ChildInsert, Keys: []int{0}, Child: 0, Other: FailEarly},
		{ID: 2, Writer: 0, Kind: ParentChildren, Keys: []int{1}, U: []string{""}, Children: []int{10, 11}, Other: FailEarly},
	}
	out = append(out, Template{h, "issue 18 case 6: repair ignores foreign keys (children before parents)"})

	// The same with new really down (its connections cut and refused)
	// while the writes run, in touch mode.
	h = base("parent-children-new-outage", flags.StageDualWrite)
	h.Seeded = []int{0}
	h.Ops = []Op{
		{ID: 1, Writer: 0, Kind: ChildInsert, Keys: []int{0}, Child: 0, Delay: 30 * ms},
		{ID: 2, Writer: 0, Kind: ParentChildren, Keys: []int{1}, U: []string{""}, Children: []int{10, 11}},
	}
	h.Control = []Control{{Kind: Outage, Side: flags.SideNew, Lag: 500 * ms}}
	out = append(out, Template{h, "issue 18 case 6: repair ignores foreign keys, new down"})

	// A OneStatement insert whose key the server makes (RETURNING),
	// Touched after the statement, while new is down, in dualwrite and in
	// live; then a child and parent in the same history.
	for _, st := range []flags.Stage{flags.StageDualWrite, flags.StageLive} {
		h = base("serial-insert-new-down-"+st.String(), st)
		h.Ops = []Op{
			{ID: 1, Writer: 0, Kind: SerialInsert, OneStatement: true, Other: FailEarly},
			{ID: 2, Writer: 0, Kind: SerialInsert, OneStatement: true, Other: FailLate},
			{ID: 3, Writer: 0, Kind: SerialInsert, OneStatement: true},
		}
		out = append(out, Template{h, "a OneStatement insert with a RETURNING key while new is down"})
		h = base("serial-insert-new-outage-"+st.String(), st)
		h.Ops = []Op{
			{ID: 1, Writer: 0, Kind: SerialInsert, OneStatement: true, Delay: 30 * ms},
			{ID: 2, Writer: 0, Kind: SerialInsert, OneStatement: true},
		}
		h.Control = []Control{{Kind: Outage, Side: st.Plan().Authoritative.Other(), Lag: 400 * ms}}
		out = append(out, Template{h, "a OneStatement insert with a RETURNING key while the other side is down"})
	}
	return out
}
