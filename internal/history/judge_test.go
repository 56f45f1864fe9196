package history

import (
	"slices"
	"testing"
	"time"

	"github.com/pgshift/pgshift/flags"
)

// rec is a record of a write of kv rows that reported keys changed.
func rec(id int, kind Kind, keys []int, u string, start, end time.Duration, out Outcome) Record {
	o := Op{ID: id, Kind: kind, Keys: keys}
	if kind != Delete {
		o.U = []string{u, u}
	}
	r := Record{Op: o, Start: start + 1, End: end + 1, Outcome: out} // time zero is the initial state's
	if out == Acked {
		r.Res.Keys = keys
	}
	return r
}

// settledAt is r with the server answering its left connection until
// settled (see Record.Settled).
func settledAt(r Record, settled time.Duration) Record {
	r.Settled = settled + 1
	return r
}

// stampedAt is r (of kv row 0) run under stage with its authoritative
// statement answered at at, in one round trip with its COMMIT or not.
func stampedAt(r Record, at time.Duration, oneStatement bool, stage flags.Stage) Record {
	r.Op.OneStatement = oneStatement
	r.Stage = [2]flags.Stage{stage, stage}
	r.Res.At = map[string]time.Duration{"kv:0": at + 1}
	return r
}

func rules(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v.Rule) {
			out = append(out, v.Rule)
		}
	}
	slices.Sort(out)
	return out
}

// TestJudge holds the judge to what its documentation says it concludes,
// on runs made by hand (no database).
func TestJudge(t *testing.T) {
	t.Parallel()
	both := func(st State) [2]State { return [2]State{st, st} }
	cases := []struct {
		name string
		run  Run
		want []string
	}{
		{"the last acknowledged write holds the row", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 10, Acked), rec(2, Update, []int{0}, "", 20, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o2"}}),
		}, nil},
		{"an older write holds the row after a later acknowledged one", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 10, Acked), rec(2, Update, []int{0}, "", 20, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o1"}}),
		}, []string{RuleAckNotReplaced}},
		{"overlapping writes: either may win", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 25, Acked), rec(2, Update, []int{0}, "", 20, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o1"}}),
		}, nil},
		{"a failed write is visible", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 10, Acked), rec(2, Update, []int{0}, "", 20, 30, Failed)},
			Final:   both(State{"kv:0": {V: "o2"}}),
		}, []string{RuleFailedInvisible}},
		{"an unknown write may have committed", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 10, Acked), rec(2, Update, []int{0}, "", 20, 30, Unknown)},
			Final:   both(State{"kv:0": {V: "o2"}}),
		}, nil},
		{"an unknown write need not have committed", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 10, Acked), rec(2, Update, []int{0}, "", 20, 30, Unknown)},
			Final:   both(State{"kv:0": {V: "o1"}}),
		}, nil},
		{"an unknown write's state after a later acknowledged write", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 10, Unknown), rec(2, Update, []int{0}, "", 20, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o1"}}),
		}, []string{RuleAckNotReplaced}},
		{"an unknown write whose COMMIT the server answered after a later acknowledged write", Run{
			Records: []Record{settledAt(rec(1, Upsert, []int{0}, "", 0, 10, Unknown), 40), rec(2, Update, []int{0}, "", 20, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o1"}}),
		}, nil},
		{"a statement answered after a later write ended, its COMMIT not yet sent", Run{
			Records: []Record{stampedAt(rec(1, Update, []int{0}, "", 0, 40, Acked), 35, false, flags.StageDualWrite), rec(2, Upsert, []int{0}, "", 10, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o2"}}),
		}, []string{RuleAckNotReplaced}},
		{"a OneStatement write under new's authority: its COMMIT waits for old's", Run{
			Records: []Record{stampedAt(rec(1, Update, []int{0}, "", 0, 40, Acked), 35, true, flags.StageLive), rec(2, Upsert, []int{0}, "", 10, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o2"}}),
		}, []string{RuleAckNotReplaced}},
		{"a OneStatement write under old's authority: the server committed it with the statement, the answer was read late", Run{
			Records: []Record{stampedAt(rec(1, Update, []int{0}, "", 0, 40, Acked), 35, true, flags.StageDualWrite), rec(2, Upsert, []int{0}, "", 10, 30, Acked)},
			Final:   both(State{"kv:0": {V: "o2"}}),
		}, nil},
		{"an acknowledged insert is gone", Run{
			Records: []Record{rec(1, Insert, []int{0}, "", 0, 10, Acked)},
			Final:   both(State{}),
		}, []string{RuleAckNotReplaced}},
		{"an acknowledged delete, then the row", Run{
			History: History{Seeded: []int{0}},
			Records: []Record{rec(1, Delete, []int{0}, "", 5, 10, Acked)},
			Final:   both(State{"kv:0": {V: "seed"}}),
		}, []string{RuleAckNotReplaced}},
		{"the row gone only by a failed delete", Run{
			Records: []Record{rec(1, Insert, []int{0}, "", 0, 10, Acked), rec(2, Delete, []int{0}, "", 5, 30, Failed)},
			Final:   both(State{}),
		}, []string{RuleFailedInvisible}},
		{"a unique value of another write", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "a", 0, 10, Acked)},
			Final:   both(State{"kv:0": {V: "o1", U: "b"}}),
		}, []string{RuleFromAWrite}},
		{"the sides differ", Run{
			Records: []Record{rec(1, Upsert, []int{0}, "", 0, 10, Unknown)},
			Final:   [2]State{{"kv:0": {V: "o1"}}, {}},
		}, []string{RuleSidesEqual}},
		{"a child acknowledged after its parent's delete, gone by the cascade", Run{
			History: History{Seeded: []int{0}},
			Records: []Record{rec(1, Delete, []int{0}, "", 0, 10, Acked),
				{Op: Op{ID: 2, Kind: ChildInsert, Keys: []int{0}, Child: 0}, Start: 20, End: 30, Outcome: Acked, Res: result{Children: []int{0}}}},
			Final: both(State{}),
		}, []string{RuleAckNotReplaced}},
		{"a serial insert that failed, yet its row is there", Run{
			Records: []Record{{Op: Op{ID: 1, Kind: SerialInsert}, Start: 0, End: 10, Outcome: Failed}},
			Final:   both(State{"sq:7": {V: "o1"}}),
		}, []string{RuleFailedInvisible}},
		{"entries left", Run{Leftover: [2][]string{{"public.kv {0}"}, nil}}, []string{RuleLogsDrained}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vs := Judge(&tc.run)
			if got := rules(vs); !slices.Equal(got, tc.want) {
				t.Fatalf("rules broken %v, want %v; violations: %v", got, tc.want, vs)
			}
		})
	}
}
