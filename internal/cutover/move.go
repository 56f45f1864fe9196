package cutover

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/pgshift/pgshift/flags"
)

// Cohort selects who moves in a flag file; set exactly one of its fields
// (with Percent, also From).
type Cohort struct {
	// Keys are routing keys (user or tenant ids). They move into a rule of
	// their own that lists them by targeting key, ahead of every other rule.
	Keys []string
	// Percent moves that many percentage points of the flag's fractional
	// rollout from the bucket of stage From to the bucket of the target
	// stage (created when missing).
	Percent int
	From    flags.Stage
	// Rule moves the Nth branch (from 1) of the flag's targeting "if": the
	// users its condition matches (an attribute rule, say).
	Rule int
	// Default moves everyone no rule places: the flag's default variant, or
	// the final value of its targeting "if".
	Default bool
}

func (c Cohort) String() string {
	switch {
	case len(c.Keys) > 0:
		return fmt.Sprintf("routing keys %v", c.Keys)
	case c.Percent > 0:
		return fmt.Sprintf("%d%% of the %v rollout", c.Percent, c.From)
	case c.Rule > 0:
		return fmt.Sprintf("rule %d", c.Rule)
	}
	return "everyone else (the default)"
}

func (c Cohort) validate() error {
	n := 0
	for _, set := range []bool{len(c.Keys) > 0, c.Percent != 0, c.Rule != 0, c.Default} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return errors.New("cutover: name one cohort: routing keys, a percentage of the rollout, a rule, or the default")
	case c.Percent < 0 || c.Percent > 100:
		return fmt.Errorf("cutover: percentage %d: give 1 to 100", c.Percent)
	case c.Rule < 0:
		return fmt.Errorf("cutover: rule %d: rules count from 1", c.Rule)
	}
	return nil
}

// FlagFile is the flagd file an application's flags.NewFileEvaluator reads,
// and the string flag in it that holds the stage.
type FlagFile struct {
	Path string
	// Flag is the stage flag's key; flags.DefaultStageFlag when empty.
	Flag string
}

func (ff FlagFile) flag() string {
	if ff.Flag == "" {
		return flags.DefaultStageFlag
	}
	return ff.Flag
}

// prevPath is where Move keeps the version it replaced, for Undo.
func (ff FlagFile) prevPath() string { return ff.Path + ".prev" }

// Stage returns the stage the cohort is in now. Keys must all be in one
// stage (the stage the flag gives each with no attributes); Percent's is
// From.
func (ff FlagFile) Stage(c Cohort) (flags.Stage, error) {
	if err := c.validate(); err != nil {
		return 0, err
	}
	data, err := os.ReadFile(ff.Path)
	if err != nil {
		return 0, fmt.Errorf("cutover: %w", err)
	}
	switch {
	case c.Percent > 0:
		return c.From, nil
	case len(c.Keys) > 0:
		var stage flags.Stage
		for i, k := range c.Keys {
			s, err := flags.EvaluateFile(ff.Path, data, ff.flag(), k, nil)
			if err != nil {
				return 0, fmt.Errorf("cutover: %w", err)
			}
			if i > 0 && s != stage {
				return 0, fmt.Errorf("cutover: routing keys %s and %s are in different stages (%v, %v): move them separately", c.Keys[0], k, stage, s)
			}
			stage = s
		}
		return stage, nil
	}
	_, f, err := ff.parse(data)
	if err != nil {
		return 0, err
	}
	v, err := f.cohortVariant(c)
	if err != nil {
		return 0, err
	}
	return f.stageOf(v)
}

// Move rewrites the file so that the cohort is in stage to, and keeps the
// version it replaces for Undo. The new version is checked as the file
// evaluator would check it, then written to a temporary file and renamed
// over the old one, so an application reading the file sees the old
// version or the new one, never a part. Move does not check gates: use
// Check first.
func (ff FlagFile) Move(c Cohort, to flags.Stage) error {
	if err := c.validate(); err != nil {
		return err
	}
	data, err := os.ReadFile(ff.Path)
	if err != nil {
		return fmt.Errorf("cutover: %w", err)
	}
	doc, f, err := ff.parse(data)
	if err != nil {
		return err
	}
	f.ensureVariant(to)
	switch {
	case len(c.Keys) > 0:
		f.moveKeys(c.Keys, to)
	case c.Percent > 0:
		err = f.movePercent(c.Percent, c.From, to)
	case c.Rule > 0:
		err = f.setRule(c.Rule, to)
	default:
		err = f.setDefault(to)
	}
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("cutover: %w", err)
	}
	out = append(out, '\n')
	if err := flags.CheckFile(ff.Path, out); err != nil {
		return fmt.Errorf("cutover: the moved file would not load: %w", err)
	}
	if err := writeAtomic(ff.prevPath(), data); err != nil {
		return err
	}
	return writeAtomic(ff.Path, out)
}

// Undo puts back the version the last Move replaced (once).
func (ff FlagFile) Undo() error {
	prev, err := os.ReadFile(ff.prevPath())
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cutover: nothing to undo: %s has no earlier version (%s)", ff.Path, ff.prevPath())
	}
	if err != nil {
		return fmt.Errorf("cutover: %w", err)
	}
	if err := flags.CheckFile(ff.Path, prev); err != nil {
		return fmt.Errorf("cutover: the earlier version does not load: %w", err)
	}
	if err := writeAtomic(ff.Path, prev); err != nil {
		return err
	}
	return os.Remove(ff.prevPath())
}

// writeAtomic replaces path with data by renaming a temporary file of the
// same directory over it.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("cutover: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("cutover: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("cutover: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cutover: write %s: %w", tmp.Name(), err)
	}
	if fi, err := os.Stat(path); err == nil {
		_ = os.Chmod(tmp.Name(), fi.Mode())
	} else {
		_ = os.Chmod(tmp.Name(), 0o644)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cutover: replace %s: %w", path, err)
	}
	return nil
}

// flagDef is the stage flag inside a parsed file, edited in place.
type flagDef struct {
	def  map[string]any
	name string
	path string
}

// parse reads a flagd JSON file and finds the stage flag in it.
func (ff FlagFile) parse(data []byte) (map[string]any, *flagDef, error) {
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("cutover: flag file %s is not JSON (pgshift move edits JSON flag files): %w", ff.Path, err)
	}
	all, _ := doc["flags"].(map[string]any)
	def, ok := all[ff.flag()].(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("cutover: flag file %s has no flag %q", ff.Path, ff.flag())
	}
	return doc, &flagDef{def: def, name: ff.flag(), path: ff.Path}, nil
}

func (f *flagDef) stageOf(variant string) (flags.Stage, error) {
	vs, _ := f.def["variants"].(map[string]any)
	v, ok := vs[variant].(string)
	if !ok {
		return 0, fmt.Errorf("cutover: flag %s in %s: variant %q holds no string", f.name, f.path, variant)
	}
	return flags.ParseStage(v)
}

// ensureVariant makes sure a variant named after stage s holds s.
func (f *flagDef) ensureVariant(s flags.Stage) {
	vs, _ := f.def["variants"].(map[string]any)
	if vs == nil {
		vs = map[string]any{}
		f.def["variants"] = vs
	}
	vs[s.String()] = s.String()
}

// branches returns the flag's targeting "if" list (nil when it has none).
func (f *flagDef) branches() []any {
	t, _ := f.def["targeting"].(map[string]any)
	ifs, _ := t["if"].([]any)
	return ifs
}

func (f *flagDef) setBranches(ifs []any) {
	if len(ifs) == 0 {
		delete(f.def, "targeting")
		return
	}
	f.def["targeting"] = map[string]any{"if": ifs}
}

// keyList returns the keys of a branch condition that is exactly
// {"in": [{"var": "targetingKey"}, [keys...]]}.
func keyList(cond any) ([]any, bool) {
	m, ok := cond.(map[string]any)
	if !ok || len(m) != 1 {
		return nil, false
	}
	in, ok := m["in"].([]any)
	if !ok || len(in) != 2 {
		return nil, false
	}
	v, ok := in[0].(map[string]any)
	if !ok || v["var"] != "targetingKey" {
		return nil, false
	}
	keys, ok := in[1].([]any)
	return keys, ok
}

func keyCondition(keys []any) map[string]any {
	return map[string]any{"in": []any{map[string]any{"var": "targetingKey"}, keys}}
}

// moveKeys takes keys out of every rule that lists them by targeting key
// (dropping rules left empty) and puts them in the first such rule that
// gives stage to, or in a new one ahead of the others.
func (f *flagDef) moveKeys(keys []string, to flags.Stage) {
	ifs := f.branches()
	var kept []any
	for i := 0; i+1 < len(ifs); i += 2 {
		if list, ok := keyList(ifs[i]); ok {
			list = slices.DeleteFunc(slices.Clone(list), func(k any) bool { return slices.Contains(keys, fmt.Sprint(k)) })
			if len(list) == 0 {
				continue
			}
			ifs[i] = keyCondition(list)
		}
		kept = append(kept, ifs[i], ifs[i+1])
	}
	if len(ifs)%2 == 1 {
		kept = append(kept, ifs[len(ifs)-1])
	}
	for i := 0; i+1 < len(kept); i += 2 {
		if list, ok := keyList(kept[i]); ok && kept[i+1] == to.String() {
			for _, k := range keys {
				list = append(list, k)
			}
			kept[i] = keyCondition(list)
			f.setBranches(kept)
			return
		}
	}
	listed := make([]any, len(keys))
	for i, k := range keys {
		listed[i] = k
	}
	f.setBranches(append([]any{keyCondition(listed), to.String()}, kept...))
}

// fractional finds the flag's fractional rollout: the final value of its
// targeting "if", or its whole targeting.
func (f *flagDef) fractional() ([]any, error) {
	expr := f.def["targeting"]
	if ifs := f.branches(); len(ifs)%2 == 1 {
		expr = ifs[len(ifs)-1]
	}
	m, _ := expr.(map[string]any)
	buckets, ok := m["fractional"].([]any)
	if !ok {
		return nil, fmt.Errorf("cutover: flag %s in %s has no fractional rollout to move percentages of (its targeting, or the final value of its \"if\")", f.name, f.path)
	}
	return buckets, nil
}

// movePercent moves p points of the fractional rollout from stage from's
// bucket to stage to's.
func (f *flagDef) movePercent(p int, from, to flags.Stage) error {
	buckets, err := f.fractional()
	if err != nil {
		return err
	}
	var src, dst []any
	for _, b := range buckets {
		pair, ok := b.([]any)
		if !ok || len(pair) != 2 {
			continue // the bucketing key expression
		}
		switch pair[0] {
		case from.String():
			src = pair
		case to.String():
			dst = pair
		}
	}
	have, _ := weight(src)
	if src == nil || have < float64(p) {
		return fmt.Errorf("cutover: the %s rollout of flag %s holds %v%% in %v, less than the %d%% to move", f.path, f.name, have, from, p)
	}
	src[1] = have - float64(p)
	if dst == nil {
		f.appendBucket(to, p)
		return nil
	}
	w, _ := weight(dst)
	dst[1] = w + float64(p)
	return nil
}

func weight(pair []any) (float64, bool) {
	if len(pair) != 2 {
		return 0, false
	}
	w, ok := pair[1].(float64)
	return w, ok
}

// appendBucket adds a bucket for stage s to the fractional rollout.
func (f *flagDef) appendBucket(s flags.Stage, p int) {
	bucket := []any{s.String(), float64(p)}
	if ifs := f.branches(); len(ifs)%2 == 1 {
		m := ifs[len(ifs)-1].(map[string]any)
		m["fractional"] = append(m["fractional"].([]any), bucket)
		return
	}
	m := f.def["targeting"].(map[string]any)
	m["fractional"] = append(m["fractional"].([]any), bucket)
}

// cohortVariant is the variant a Rule or Default cohort gets now.
func (f *flagDef) cohortVariant(c Cohort) (string, error) {
	ifs := f.branches()
	if c.Rule > 0 {
		i := 2*c.Rule - 1
		if i >= len(ifs) {
			return "", fmt.Errorf("cutover: flag %s in %s has %d rules, not %d", f.name, f.path, len(ifs)/2, c.Rule)
		}
		v, ok := ifs[i].(string)
		if !ok {
			return "", fmt.Errorf("cutover: rule %d of flag %s in %s gives no plain variant", c.Rule, f.name, f.path)
		}
		return v, nil
	}
	if len(ifs)%2 == 1 {
		v, ok := ifs[len(ifs)-1].(string)
		if !ok {
			return "", fmt.Errorf("cutover: the final value of flag %s in %s is a rollout, not a stage: move percentages of it", f.name, f.path)
		}
		return v, nil
	}
	v, _ := f.def["defaultVariant"].(string)
	return v, nil
}

func (f *flagDef) setRule(n int, to flags.Stage) error {
	if _, err := f.cohortVariant(Cohort{Rule: n}); err != nil {
		return err
	}
	f.branches()[2*n-1] = to.String()
	return nil
}

func (f *flagDef) setDefault(to flags.Stage) error {
	if _, err := f.cohortVariant(Cohort{Default: true}); err != nil {
		return err
	}
	if ifs := f.branches(); len(ifs)%2 == 1 {
		ifs[len(ifs)-1] = to.String()
		return nil
	}
	f.def["defaultVariant"] = to.String()
	return nil
}
