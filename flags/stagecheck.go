package flags

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

// scheme is what a flag file's stage flags must hold for an Evaluator of
// that scheme to map every value they can produce to a stage.
type scheme struct {
	booleans  bool
	stageFlag string
	writeFlag string
	readFlag  string
}

func (c config) scheme() scheme {
	return scheme{booleans: c.booleans, stageFlag: c.stageFlag, writeFlag: c.writeFlag, readFlag: c.readFlag}
}

func stringScheme(flagKey string) scheme {
	if flagKey == "" {
		flagKey = DefaultStageFlag
	}
	return scheme{stageFlag: flagKey}
}

// flagDoc is the part of a flag definition the stage check reads.
type flagDoc struct {
	State          string         `json:"state"`
	Variants       map[string]any `json:"variants"`
	DefaultVariant *string        `json:"defaultVariant"`
	Targeting      any            `json:"targeting"`
}

// checkStages returns an error naming the flag and the variant when a stage
// flag of the scheme in the flag configuration js can produce a value the
// Evaluator cannot map: a string that names no stage, or a non-boolean in
// the boolean scheme, or a targeting result that names no variant. Such a
// file is as unusable as one that is not JSON: a user it placed there would
// get a fallback stage, which may write one side only. A stage flag that is
// missing is not checked here (the Evaluator falls back and says so).
func checkStages(js string, sc scheme) error {
	var doc struct {
		Flags map[string]json.RawMessage `json:"flags"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	keys := []string{sc.stageFlag}
	if sc.booleans {
		keys = []string{sc.writeFlag, sc.readFlag}
	}
	for _, key := range keys {
		raw, ok := doc.Flags[key]
		if !ok {
			continue
		}
		var f flagDoc
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("flag %s: %w", key, err)
		}
		for _, name := range sortedKeys(f.Variants) {
			v := f.Variants[name]
			if sc.booleans {
				if _, ok := v.(bool); !ok {
					return fmt.Errorf("flag %s: variant %q holds %s, not a boolean: the boolean scheme reads true or false", key, name, jsonText(v))
				}
				continue
			}
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("flag %s: variant %q holds %s, not a stage name (%s)", key, name, jsonText(v), stageNamesList())
			}
			if _, err := ParseStage(s); err != nil {
				return fmt.Errorf("flag %s: variant %q: %w", key, name, err)
			}
		}
		r := targetingResults(f.Targeting)
		if f.DefaultVariant != nil {
			r.literals = append(r.literals, *f.DefaultVariant)
		}
		for _, name := range r.literals {
			if _, ok := f.Variants[name]; !ok {
				return fmt.Errorf("flag %s: its rules name variant %q, which is not among its variants", key, name)
			}
		}
	}
	return nil
}

// FlagStages returns the stages the string flag flagKey (DefaultStageFlag
// when empty) of the flag file data can give a user, in migration order:
// those of the variants its rules name, its default variant when a user
// can reach it (no rule matches, or a percentage rollout meets a request
// without a routing key), and every variant's when a rule computes the
// variant's name. The file must pass CheckFile.
func FlagStages(path string, data []byte, flagKey string) ([]Stage, error) {
	sc := stringScheme(flagKey)
	chk, err := newChecker(sc)
	if err != nil {
		return nil, err
	}
	js, err := chk.check(path, data)
	if err != nil {
		return nil, err
	}
	return reachableStages(js, sc.stageFlag)
}

func reachableStages(js, flagKey string) ([]Stage, error) {
	var doc struct {
		Flags map[string]flagDoc `json:"flags"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		return nil, err
	}
	f, ok := doc.Flags[flagKey]
	if !ok {
		return nil, fmt.Errorf("no flag %q", flagKey)
	}
	r := targetingResults(f.Targeting)
	names := r.literals
	if r.computed {
		names = sortedKeys(f.Variants)
	}
	if (r.mayBeNull || f.Targeting == nil) && f.DefaultVariant != nil {
		names = append(names, *f.DefaultVariant)
	}
	var out []Stage
	for _, n := range names {
		v, _ := f.Variants[n].(string)
		s, err := ParseStage(v)
		if err != nil {
			return nil, fmt.Errorf("flag %s: variant %q: %w", flagKey, n, err)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out, nil
}

// results is what a targeting expression can evaluate to.
type results struct {
	literals  []string // variant names it can give
	mayBeNull bool     // it can give nothing: the default variant
	computed  bool     // it can give a name computed from the request
}

// targetingResults walks the places of a JsonLogic targeting whose value
// becomes the variant: the branches of "if" and the buckets of
// "fractional". Any other operator computes its value.
func targetingResults(expr any) results {
	var r results
	var walk func(any)
	walk = func(e any) {
		switch e := e.(type) {
		case nil:
			r.mayBeNull = true
		case string:
			r.literals = append(r.literals, e)
		case map[string]any:
			if len(e) != 1 {
				r.computed = true
				return
			}
			if ifs, ok := e["if"].([]any); ok {
				for i := 1; i < len(ifs); i += 2 {
					walk(ifs[i])
				}
				if len(ifs)%2 == 1 {
					walk(ifs[len(ifs)-1])
				} else {
					r.mayBeNull = true
				}
				return
			}
			if buckets, ok := e["fractional"].([]any); ok {
				// A request without a routing key gets no bucket.
				r.mayBeNull = true
				for _, b := range buckets {
					if pair, ok := b.([]any); ok && len(pair) > 0 {
						walk(pair[0])
					}
				}
				return
			}
			r.computed, r.mayBeNull = true, true
		default:
			r.computed = true
		}
	}
	walk(expr)
	return r
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func stageNamesList() string {
	out := ""
	for i, n := range stageNames {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}

// stageMask is the set of stages the configuration js gives in the scheme,
// a bit per stage; 0 when the stage flags are missing.
func stageMask(js string, sc scheme) uint32 {
	var mask uint32
	if !sc.booleans {
		stages, _ := reachableStages(js, sc.stageFlag)
		for _, s := range stages {
			mask |= 1 << s
		}
		return mask
	}
	writes, wok := reachableBools(js, sc.writeFlag)
	reads, rok := reachableBools(js, sc.readFlag)
	if !wok || !rok {
		return 0
	}
	for _, w := range writes {
		for _, r := range reads {
			if s, ok := stageFromBooleans(w, r, nil); ok {
				mask |= 1 << s
			}
		}
	}
	return mask
}

// reachableBools returns the values a boolean flag of js can give.
func reachableBools(js, flagKey string) ([]bool, bool) {
	var doc struct {
		Flags map[string]flagDoc `json:"flags"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil {
		return nil, false
	}
	f, ok := doc.Flags[flagKey]
	if !ok {
		return nil, false
	}
	r := targetingResults(f.Targeting)
	names := r.literals
	if r.computed {
		names = sortedKeys(f.Variants)
	}
	if (r.mayBeNull || f.Targeting == nil) && f.DefaultVariant != nil {
		names = append(names, *f.DefaultVariant)
	}
	var out []bool
	for _, n := range names {
		if b, ok := f.Variants[n].(bool); ok && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out, true
}
