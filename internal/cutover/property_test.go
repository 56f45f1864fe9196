package cutover_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/flags"
	"github.com/pgshift/pgshift/internal/cutover"
)

// TestMovesChangeOnlyTheirCohort is the property every path of a cohort
// keeps: on random flag files (rules on keys and attributes, fractional
// splits of any order and size, aliases of stages) and random moves (keys,
// rule, percent in both directions, default, undo), evaluated for 10,000
// synthetic users before and after, every user whose stage changes goes
// from the move's From to its To; a move the gates refuse (a skip) is not
// applied; no user ever moves more than one stage forward; an undo brings
// back every user's stage of before the move. A move Prepare refuses leaves
// the file as it was.
func TestMovesChangeOnlyTheirCohort(t *testing.T) {
	t.Parallel()
	seeds, steps := 12, 12
	if testing.Short() {
		seeds, steps = 3, 6
	}
	users := syntheticUsers(10000)
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(seed), 19))
			f := randomFile(t, r)
			ff := cutover.FlagFile{Path: filepath.Join(t.TempDir(), "flags.json")}
			if err := os.WriteFile(ff.Path, f.data, 0o644); err != nil {
				t.Fatal(err)
			}
			stages := stagesOf(t, f.data, users)
			var undone []flags.Stage // the stages before the last move
			for step := range steps {
				data, _ := os.ReadFile(ff.Path)
				var e *cutover.Edit
				var err error
				what := ""
				if r.IntN(6) == 0 {
					what = "undo"
					e, err = ff.PrepareUndo()
				} else {
					c, to := f.randomMove(r, ff, stages)
					what = fmt.Sprintf("%s to %v", c, to)
					e, err = ff.Prepare(c, to)
				}
				if now, _ := os.ReadFile(ff.Path); !bytes.Equal(now, data) {
					t.Fatalf("step %d (%s): preparing changed the file", step, what)
				}
				if err != nil {
					t.Logf("step %d (%s): refused: %v", step, what, err)
					continue
				}
				// The gates of a forward move of one stage read the
				// databases: taken as met here.
				rep := &cutover.Report{From: e.From, To: e.To, Forward: true, Ready: true}
				if e.To != e.From+1 {
					if rep, err = cutover.Check(t.Context(), cutover.Target{}, e.From, e.To, cutover.Limits{}); err != nil {
						t.Fatal(err)
					}
				}
				if e.From == e.To {
					continue // nothing to move; pgshift move says so
				}
				if !rep.Ready {
					t.Logf("step %d (%s): gates refuse %v -> %v", step, what, e.From, e.To)
					continue
				}
				if err := e.Apply(); err != nil {
					t.Fatalf("step %d (%s): %v", step, what, err)
				}
				after, _ := os.ReadFile(ff.Path)
				now := stagesOf(t, after, users)
				moved := 0
				for i, u := range users {
					if now[i] == stages[i] {
						continue
					}
					moved++
					if stages[i] != e.From || now[i] != e.To {
						t.Fatalf("step %d (%s, %v -> %v): user %s %v went %v -> %v\nbefore:\n%s\nafter:\n%s",
							step, what, e.From, e.To, u.key, u.attrs, stages[i], now[i], data, after)
					}
					if now[i] > stages[i]+1 {
						t.Fatalf("step %d (%s): user %s went %v -> %v, more than one stage forward", step, what, u.key, stages[i], now[i])
					}
				}
				for _, k := range e.Cohort.Keys {
					if i := keyIndex(k); now[i] != e.To {
						t.Fatalf("step %d (%s): key %s is in %v, want %v", step, what, k, now[i], e.To)
					}
				}
				if e.Undo {
					for i := range users {
						if now[i] != undone[i] {
							t.Fatalf("step %d: undo left user %s in %v, not %v as before the move", step, users[i].key, now[i], undone[i])
						}
					}
				}
				t.Logf("step %d (%s): %v -> %v, %d users moved", step, what, e.From, e.To, moved)
				undone, stages = stages, now
			}
		})
	}
}

// TestMovesRefuseTheBooleanScheme is the property's other scheme: on random
// flag files of the two booleans (write-to-new-db, read-from-new-db: rules
// on keys and attributes, fractional splits), pgshift move, which edits a
// string stage flag only, refuses every random move and undo, naming the
// scheme, and leaves the file as it was, so no user's stage changes.
func TestMovesRefuseTheBooleanScheme(t *testing.T) {
	t.Parallel()
	for seed := range 6 {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(uint64(seed), 1919))
			data := randomBooleanFile(t, r)
			ff := cutover.FlagFile{Path: filepath.Join(t.TempDir(), "flags.json")}
			if err := os.WriteFile(ff.Path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			f := randomFlags{data: data, rules: r.IntN(3)}
			stages := flags.AllStages()
			for step := range 24 {
				var err error
				what := "undo"
				if r.IntN(6) == 0 {
					_, err = ff.PrepareUndo()
				} else {
					c, to := f.randomMove(r, ff, stages)
					what = fmt.Sprintf("%s to %v", c, to)
					_, err = ff.Prepare(c, to)
				}
				if now, _ := os.ReadFile(ff.Path); !bytes.Equal(now, data) {
					t.Fatalf("step %d (%s): the file changed", step, what)
				}
				if err == nil {
					t.Fatalf("step %d (%s): a move of a boolean-scheme file was prepared\n%s", step, what, data)
				}
				if what != "undo" && !strings.Contains(err.Error(), "boolean scheme") {
					t.Fatalf("step %d (%s): refused with %v, want it to name the boolean scheme", step, what, err)
				}
			}
		})
	}
}

// randomBooleanFile is a random flag file of the boolean scheme that the
// evaluator takes.
func randomBooleanFile(t *testing.T, r *rand.Rand) []byte {
	t.Helper()
	for {
		all := map[string]any{}
		for _, key := range []string{flags.DefaultWriteFlag, flags.DefaultReadFlag} {
			names := []string{"on", "off"}
			def := map[string]any{"state": "ENABLED", "variants": map[string]any{"on": true, "off": false}, "defaultVariant": names[r.IntN(2)]}
			var ifs []any
			for range r.IntN(3) {
				var cond any
				if r.IntN(2) == 0 {
					cond = map[string]any{"in": []any{map[string]any{"var": "targetingKey"}, []any{fmt.Sprint(r.IntN(1000))}}}
				} else {
					cond = map[string]any{"in": []any{map[string]any{"var": "country"}, []any{countries[r.IntN(4)]}}}
				}
				ifs = append(ifs, cond, names[r.IntN(2)])
			}
			if r.IntN(2) == 0 {
				ifs = append(ifs, map[string]any{"fractional": []any{[]any{"on", float64(r.IntN(60))}, []any{"off", float64(1 + r.IntN(60))}}})
			}
			if len(ifs) > 0 {
				def["targeting"] = map[string]any{"if": ifs}
			}
			all[key] = def
		}
		data, err := json.MarshalIndent(map[string]any{"flags": all}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if flags.CheckFile("random.json", data, flags.WithBooleanFlags(flags.DefaultWriteFlag, flags.DefaultReadFlag)) == nil {
			return data
		}
	}
}

// syntheticUsers: the first tenth are keys with no attributes (the users a
// key cohort names: a key cohort's stage is read without attributes), the
// rest have a country and a plan, and one more is a request without a
// routing key.
func syntheticUsers(n int) []testUser {
	r := rand.New(rand.NewPCG(1, 2))
	us := make([]testUser, n, n+1)
	for i := range us {
		us[i].key = fmt.Sprint(i)
		if i >= n/10 {
			us[i].attrs = map[string]any{"country": countries[r.IntN(len(countries))], "plan": plans[r.IntN(len(plans))]}
		}
	}
	return append(us, testUser{})
}

func keyIndex(k string) int {
	var i int
	_, _ = fmt.Sscan(k, &i)
	return i
}

var (
	countries = []string{"IN", "US", "DE", "FR"}
	plans     = []string{"pro", "free"}
)

// randomFlags is a random flag file and what a move of it can name.
type randomFlags struct {
	data  []byte
	rules int
}

func randomFile(t *testing.T, r *rand.Rand) randomFlags {
	for {
		f := randomFlagsOnce(r)
		if err := flags.CheckFile("random.json", f.data); err == nil {
			return f
		}
	}
}

func randomFlagsOnce(r *rand.Rand) randomFlags {
	variants := map[string]any{}
	var names []string
	for _, s := range flags.AllStages() {
		if r.IntN(4) > 0 {
			variants[s.String()] = s.String()
			names = append(names, s.String())
		}
	}
	if r.IntN(3) == 0 {
		s := flags.AllStages()[r.IntN(6)]
		variants["alias"] = s.String()
		names = append(names, "alias")
	}
	if len(names) == 0 {
		variants["off"] = "off"
		names = append(names, "off")
	}
	pick := func() string { return names[r.IntN(len(names))] }
	def := map[string]any{"state": "ENABLED", "variants": variants, "defaultVariant": pick()}
	rules := r.IntN(4)
	var ifs []any
	for range rules {
		var cond any
		switch r.IntN(3) {
		case 0:
			var keys []any
			for range 1 + r.IntN(5) {
				keys = append(keys, fmt.Sprint(r.IntN(1000)))
			}
			cond = map[string]any{"in": []any{map[string]any{"var": "targetingKey"}, keys}}
		case 1:
			cond = map[string]any{"in": []any{map[string]any{"var": "country"}, []any{countries[r.IntN(4)], countries[r.IntN(4)]}}}
		default:
			cond = map[string]any{"and": []any{
				map[string]any{"==": []any{map[string]any{"var": "plan"}, plans[r.IntN(2)]}},
				map[string]any{"in": []any{map[string]any{"var": "country"}, []any{countries[r.IntN(4)]}}},
			}}
		}
		ifs = append(ifs, cond, pick())
	}
	var final any
	switch r.IntN(3) {
	case 1:
		final = pick()
	case 2:
		var buckets []any
		if r.IntN(2) == 0 {
			buckets = append(buckets, map[string]any{"var": "targetingKey"})
		}
		total := 0
		for range 2 + r.IntN(4) {
			w := r.IntN(60)
			total += w
			buckets = append(buckets, []any{pick(), float64(w)})
		}
		if total == 0 {
			buckets = append(buckets, []any{pick(), float64(7)})
		}
		final = map[string]any{"fractional": buckets}
	}
	switch {
	case rules > 0 && final != nil:
		def["targeting"] = map[string]any{"if": append(ifs, final)}
	case rules > 0:
		def["targeting"] = map[string]any{"if": ifs}
	case final != nil:
		if m, ok := final.(map[string]any); ok {
			def["targeting"] = m
		} else {
			def["defaultVariant"] = final
		}
	}
	data, err := json.MarshalIndent(map[string]any{"flags": map[string]any{flags.DefaultStageFlag: def}}, "", "  ")
	if err != nil {
		panic(err)
	}
	return randomFlags{data: data, rules: rules}
}

// randomMove names a cohort and a stage: mostly one stage away from where
// the cohort is, sometimes anywhere; a percentage of the stage some user is
// in.
func (f randomFlags) randomMove(r *rand.Rand, ff cutover.FlagFile, stages []flags.Stage) (cutover.Cohort, flags.Stage) {
	var c cutover.Cohort
	switch r.IntN(4) {
	case 0:
		for range 1 + r.IntN(2) {
			c.Keys = append(c.Keys, fmt.Sprint(r.IntN(1000)))
		}
	case 1:
		c.Rule = 1 + r.IntN(f.rules+1)
	case 2:
		c = cutover.Cohort{Percent: 1 + r.IntN(40), From: stages[r.IntN(len(stages))]}
	default:
		c.Default = true
	}
	from, err := ff.Stage(c)
	if err != nil || r.IntN(8) == 0 {
		return c, flags.AllStages()[r.IntN(6)]
	}
	if from == flags.StageComplete || (from > flags.StageOff && r.IntN(3) == 0) {
		return c, from - 1
	}
	return c, from + 1
}
