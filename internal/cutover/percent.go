package cutover

import (
	"fmt"
	"math"

	"github.com/pgshift/pgshift/flags"
)

// flagd's fractional hashes each user to a point of [0, total weight) and
// walks the buckets in order: a user is in the bucket whose range holds the
// point. Inserting a bucket, or changing the weight of one, shifts the
// ranges of every bucket after it. A percentage move therefore keeps the
// total weight and every range but two: it carves points off an edge of a
// From bucket and gives them to the To bucket beside that edge (a new one
// when none is there). Only users of From move, and only to To.

// bucket is one [variant, weight] entry of a fractional.
type bucket struct {
	variant string
	weight  int64
}

// rollout is the fractional a percentage move works in: its buckets, what
// comes before them (the bucketing expression), and how to put it back.
type rollout struct {
	head    []any
	buckets []bucket
	set     func(entries []any)
}

// split finds the fractional rollout users of stage from are moved out of:
// the flag's targeting, or the final value of its "if", when it is a
// fractional. When there is none and the users no rule places (the default
// variant, or the final value of the "if") are in from, it is a new one
// that holds them all in one bucket, put where they are. A fractional gives
// a request without a routing key the default variant, so when the users
// no rule places were the final value of the "if", that value becomes the
// default variant too.
func (f *flagDef) split(from flags.Stage) (*rollout, error) {
	t, _ := f.def["targeting"].(map[string]any)
	if m, ok := t["fractional"].([]any); ok {
		return f.parseRollout(m, func(e []any) { t["fractional"] = e })
	}
	ifs := f.branches()
	if len(ifs)%2 == 1 {
		last := len(ifs) - 1
		if m, ok := ifs[last].(map[string]any); ok {
			if b, ok := m["fractional"].([]any); ok {
				return f.parseRollout(b, func(e []any) { m["fractional"] = e })
			}
		}
	}
	var v string
	var set func(e []any)
	switch {
	case len(t) == 0:
		v, _ = f.def["defaultVariant"].(string)
		set = func(e []any) { f.def["targeting"] = map[string]any{"fractional": e} }
	case ifs != nil && len(t) == 1 && len(ifs)%2 == 0:
		v, _ = f.def["defaultVariant"].(string)
		set = func(e []any) { t["if"] = append(ifs, map[string]any{"fractional": e}) }
	case ifs != nil && len(t) == 1:
		last := len(ifs) - 1
		s, ok := ifs[last].(string)
		if !ok {
			return nil, f.noRollout()
		}
		v = s
		// A request without a routing key gets no bucket but the default
		// variant: it got v, and keeps it.
		set = func(e []any) {
			ifs[last] = map[string]any{"fractional": e}
			f.def["defaultVariant"] = v
		}
	default:
		return nil, f.noRollout()
	}
	s, err := f.stageOf(v)
	if err != nil {
		return nil, err
	}
	if s != from {
		return nil, fmt.Errorf("cutover: flag %s in %s has no fractional rollout, and the users no rule places are in %v, not %v: move a percentage of them with --from %v, or move a rule or keys", f.name, f.path, s, from, s)
	}
	return &rollout{buckets: []bucket{{v, 100}}, set: set}, nil
}

func (f *flagDef) noRollout() error {
	return fmt.Errorf("cutover: flag %s in %s has no fractional rollout to move percentages of (its targeting, or the final value of its \"if\"), and its targeting is not one pgshift can add one to", f.name, f.path)
}

func (f *flagDef) parseRollout(entries []any, set func([]any)) (*rollout, error) {
	r := &rollout{set: set}
	for i, e := range entries {
		pair, ok := e.([]any)
		if !ok {
			if i == 0 {
				r.head = append(r.head, e) // the bucketing expression
				continue
			}
			return nil, fmt.Errorf("cutover: flag %s in %s: fractional entry %d is not a [variant, weight] pair", f.name, f.path, i+1)
		}
		if len(pair) == 0 {
			return nil, fmt.Errorf("cutover: flag %s in %s: fractional entry %d is empty", f.name, f.path, i+1)
		}
		v, ok := pair[0].(string)
		if !ok {
			return nil, fmt.Errorf("cutover: flag %s in %s: fractional entry %d computes its variant: pgshift moves percentages of named variants only", f.name, f.path, i+1)
		}
		w := int64(1)
		if len(pair) >= 2 && pair[1] != nil {
			fw, ok := pair[1].(float64)
			if !ok || fw != math.Trunc(fw) {
				return nil, fmt.Errorf("cutover: flag %s in %s: fractional entry %d: weight %v is not a whole number", f.name, f.path, i+1, pair[1])
			}
			w = max(int64(fw), 0)
		}
		r.buckets = append(r.buckets, bucket{v, w})
	}
	return r, nil
}

func (r *rollout) total() int64 {
	var t int64
	for _, b := range r.buckets {
		t += b.weight
	}
	return t
}

// sourceShare returns the weight that p percent of the rollout is, after
// scaling every weight so that it is a whole number (scaling keeps every
// user's bucket), or why p percent cannot leave from.
func (r *rollout) sourceShare(f *flagDef, p int, from flags.Stage) (int64, error) {
	t := r.total()
	if t <= 0 {
		return 0, fmt.Errorf("cutover: flag %s in %s: its fractional rollout has no weight", f.name, f.path)
	}
	if k := 100 / gcd(t, 100); k > 1 {
		if t*k > math.MaxInt32 {
			return 0, fmt.Errorf("cutover: flag %s in %s: its fractional weights sum to %d, which cannot be cut in whole percentages", f.name, f.path, t)
		}
		for i := range r.buckets {
			r.buckets[i].weight *= k
		}
		t *= k
	}
	var have int64
	for _, b := range r.buckets {
		if s, err := f.stageOf(b.variant); err == nil && s == from {
			have += b.weight
		}
	}
	need := int64(p) * t / 100
	if have < need {
		return 0, fmt.Errorf("cutover: the %s rollout of flag %s holds %v%% in %v, less than the %d%% to move", f.path, f.name, float64(have)*100/float64(t), from, p)
	}
	return need, nil
}

// movePercent moves p points of the fractional rollout from stage from's
// buckets to stage to's, creating the rollout when there is none (split).
func (f *flagDef) movePercent(p int, from, to flags.Stage, toVariant string) error {
	r, err := f.split(from)
	if err != nil {
		return err
	}
	need, err := r.sourceShare(f, p, from)
	if err != nil {
		return err
	}
	stage := func(i int) flags.Stage {
		if i < 0 || i >= len(r.buckets) {
			return flags.Stage(255)
		}
		s, err := f.stageOf(r.buckets[i].variant)
		if err != nil {
			return flags.Stage(255)
		}
		return s
	}
	for need > 0 {
		// A From bucket beside a To bucket first; else the last From bucket.
		src := -1
		for i := range r.buckets {
			if stage(i) != from || r.buckets[i].weight == 0 {
				continue
			}
			if stage(i+1) == to || stage(i-1) == to {
				src = i
				break
			}
			src = i
		}
		a := min(need, r.buckets[src].weight)
		r.buckets[src].weight -= a
		switch {
		case stage(src+1) == to:
			r.buckets[src+1].weight += a
		case stage(src-1) == to:
			r.buckets[src-1].weight += a
		default:
			r.buckets = append(r.buckets[:src+1], append([]bucket{{toVariant, a}}, r.buckets[src+1:]...)...)
		}
		need -= a
	}
	// Buckets of no weight hold nobody, and two neighbours of one variant
	// hold the same users as one bucket of both weights.
	var out []bucket
	for _, b := range r.buckets {
		switch {
		case b.weight == 0:
		case len(out) > 0 && out[len(out)-1].variant == b.variant:
			out[len(out)-1].weight += b.weight
		default:
			out = append(out, b)
		}
	}
	// flagd's schema wants two buckets at least: a bucket of no weight
	// keeps the rollout one.
	if len(out) == 1 {
		other := toVariant
		if out[0].variant == toVariant {
			v, err := f.variantFor(from)
			if err != nil {
				return err
			}
			other = v
		}
		out = append(out, bucket{other, 0})
	}
	entries := append([]any{}, r.head...)
	for _, b := range out {
		entries = append(entries, []any{b.variant, float64(b.weight)})
	}
	r.set(entries)
	return nil
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
