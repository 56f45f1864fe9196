package cutover

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	Keys []string `json:"keys,omitempty"`
	// Percent moves that many percentage points of the flag's fractional
	// rollout from the bucket of stage From to the bucket of the target
	// stage (created when missing).
	Percent int         `json:"percent,omitempty"`
	From    flags.Stage `json:"from,omitzero"`
	// Rule moves the Nth branch (from 1) of the flag's targeting "if": the
	// users its condition matches (an attribute rule, say).
	Rule int `json:"rule,omitempty"`
	// Default moves everyone no rule places: the flag's default variant, or
	// the final value of its targeting "if".
	Default bool `json:"default,omitempty"`
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
// From, once the file is found to have users in From to move.
func (ff FlagFile) Stage(c Cohort) (flags.Stage, error) {
	if err := c.validate(); err != nil {
		return 0, err
	}
	data, err := os.ReadFile(ff.Path)
	if err != nil {
		return 0, fmt.Errorf("cutover: %w", err)
	}
	return ff.stageIn(data, c)
}

func (ff FlagFile) stageIn(data []byte, c Cohort) (flags.Stage, error) {
	_, f, err := ff.parse(data)
	if err != nil {
		return 0, err
	}
	if len(c.Keys) > 0 {
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
	if c.Percent > 0 {
		sp, err := f.split(c.From)
		if err != nil {
			return 0, err
		}
		if _, err := sp.sourceShare(f, c.Percent, c.From); err != nil {
			return 0, err
		}
		return c.From, nil
	}
	v, err := f.cohortVariant(c)
	if err != nil {
		return 0, err
	}
	return f.stageOf(v)
}

// Edit is a move of a cohort in a flag file, worked out and checked but
// not written: Prepare and PrepareUndo refuse what cannot be done before any
// gate is measured, Apply writes it.
type Edit struct {
	File   FlagFile
	Cohort Cohort
	// From and To are the stages the cohort moves between: the move's gates
	// are those of From to To (for an undo, the move it reverses, reversed).
	From, To flags.Stage
	// Undo says the edit puts back the version the last move replaced.
	Undo bool

	before, after []byte
}

// Before and After are the file's content now and once the edit is applied.
func (e *Edit) Before() []byte { return e.before }

// After is the file's content once the edit is applied.
func (e *Edit) After() []byte { return e.after }

// MovesUser returns whether the edit moves a user (routing key and
// attributes): the file gives them From before it and To after it.
func (e *Edit) MovesUser() (func(routingKey string, attrs map[string]any) (bool, error), error) {
	before, err := flags.LoadFileRules(e.File.Path, e.before, e.File.flag())
	if err != nil {
		return nil, fmt.Errorf("cutover: %w", err)
	}
	after, err := flags.LoadFileRules(e.File.Path, e.after, e.File.flag())
	if err != nil {
		return nil, fmt.Errorf("cutover: the moved file: %w", err)
	}
	return func(key string, attrs map[string]any) (bool, error) {
		s, err := before.Stage(key, attrs)
		if err != nil || s != e.From {
			return false, err
		}
		s, err = after.Stage(key, attrs)
		return s == e.To, err
	}, nil
}

// Prepare works out the move of the cohort into stage to: the file as it
// will be, checked as the file evaluator checks it. Only the part of the
// file the move changes is rewritten. A percentage moves points of the
// From bucket of the fractional rollout into a bucket of to right beside
// it, so no other user changes bucket; a file without a fractional gets one
// where the From users are (the default variant, or the final value of the
// targeting "if"). Prepare does not check gates: use Check.
func (ff FlagFile) Prepare(c Cohort, to flags.Stage) (*Edit, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if !to.Valid() {
		return nil, fmt.Errorf("cutover: stage %v: %w", to, flags.ErrUnknownStage)
	}
	data, err := os.ReadFile(ff.Path)
	if err != nil {
		return nil, fmt.Errorf("cutover: %w", err)
	}
	if err := flags.CheckFile(ff.Path, data, flags.WithStageFlag(ff.flag())); err != nil {
		return nil, fmt.Errorf("cutover: the flag file does not load as it is; fix it first: %w", err)
	}
	from, err := ff.stageIn(data, c)
	if err != nil {
		return nil, err
	}
	e := &Edit{File: ff, Cohort: c, From: from, To: to, before: data}
	if from == to {
		e.after = data
		return e, nil
	}
	doc, f, err := ff.parse(data)
	if err != nil {
		return nil, err
	}
	toVariant, err := f.variantFor(to)
	if err != nil {
		return nil, err
	}
	switch {
	case len(c.Keys) > 0:
		f.moveKeys(c.Keys, toVariant)
	case c.Percent > 0:
		err = f.movePercent(c.Percent, c.From, to, toVariant)
	case c.Rule > 0:
		err = f.setRule(c.Rule, toVariant)
	default:
		err = f.setDefault(toVariant)
	}
	if err != nil {
		return nil, err
	}
	out, err := rewrite(data, doc)
	if err != nil {
		return nil, fmt.Errorf("cutover: %w", err)
	}
	if err := flags.CheckFile(ff.Path, out, flags.WithStageFlag(ff.flag())); err != nil {
		return nil, fmt.Errorf("cutover: the moved file would not load: %w", err)
	}
	e.after = out
	return e, nil
}

// Move prepares the move and applies it. It does not check gates: use
// Check first.
func (ff FlagFile) Move(c Cohort, to flags.Stage) error {
	e, err := ff.Prepare(c, to)
	if err != nil {
		return err
	}
	return e.Apply()
}

// moveRecord is what Apply keeps beside the file (FILE.prev.json) so that an
// undo knows which move it reverses, and that nothing changed the file since.
type moveRecord struct {
	Cohort Cohort      `json:"cohort"`
	From   flags.Stage `json:"from"`
	To     flags.Stage `json:"to"`
	// After is the SHA-256 of the file the move wrote.
	After string `json:"after_sha256"`
}

func (ff FlagFile) recordPath() string { return ff.prevPath() + ".json" }

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Apply writes the edit: the file is replaced atomically (a temporary file
// renamed over it), so an application reading it sees the old version or
// the new one, never a part. A move keeps the version it replaces (FILE.prev)
// and what it did (FILE.prev.json) for an undo; an undo removes both. Apply
// refuses when the file changed since Prepare read it.
func (e *Edit) Apply() error {
	now, err := os.ReadFile(e.File.Path)
	if err != nil {
		return fmt.Errorf("cutover: %w", err)
	}
	if !bytes.Equal(now, e.before) {
		return fmt.Errorf("cutover: %s changed while the move was checked; run the move again", e.File.Path)
	}
	if bytes.Equal(e.before, e.after) {
		return nil
	}
	if e.Undo {
		if err := writeAtomic(e.File.Path, e.after); err != nil {
			return err
		}
		return errors.Join(removeIfExists(e.File.prevPath()), removeIfExists(e.File.recordPath()))
	}
	rec, err := json.Marshal(moveRecord{Cohort: e.Cohort, From: e.From, To: e.To, After: digest(e.after)})
	if err != nil {
		return fmt.Errorf("cutover: %w", err)
	}
	if err := writeAtomic(e.File.prevPath(), e.before); err != nil {
		return err
	}
	if err := writeAtomic(e.File.recordPath(), rec); err != nil {
		return err
	}
	return writeAtomic(e.File.Path, e.after)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cutover: %w", err)
	}
	return nil
}

// PrepareUndo works out the undo of the last move: the version it replaced,
// as a move of the same cohort from the stage the move put it in back to the
// stage it left. An undo is gated like that move (Check its From and To):
// undoing a rollback is a forward move, one stage at a time. It is refused
// when the file changed since the move, or when no move recorded what it did.
func (ff FlagFile) PrepareUndo() (*Edit, error) {
	prev, err := os.ReadFile(ff.prevPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cutover: nothing to undo: %s has no earlier version (%s)", ff.Path, ff.prevPath())
	}
	if err != nil {
		return nil, fmt.Errorf("cutover: %w", err)
	}
	raw, err := os.ReadFile(ff.recordPath())
	if err != nil {
		return nil, fmt.Errorf("cutover: nothing to undo: no record of the last move of %s (%s): make the move you want with pgshift move: %w", ff.Path, ff.recordPath(), err)
	}
	var rec moveRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("cutover: the record of the last move %s: %w", ff.recordPath(), err)
	}
	now, err := os.ReadFile(ff.Path)
	if err != nil {
		return nil, fmt.Errorf("cutover: %w", err)
	}
	if digest(now) != rec.After {
		return nil, fmt.Errorf("cutover: %s changed since the last move (%s from %v to %v): an undo would revert more than that move; make the move you want with pgshift move", ff.Path, rec.Cohort, rec.From, rec.To)
	}
	if err := flags.CheckFile(ff.Path, prev, flags.WithStageFlag(ff.flag())); err != nil {
		return nil, fmt.Errorf("cutover: the earlier version does not load: %w", err)
	}
	c := rec.Cohort
	if c.Percent > 0 {
		c.From = rec.To
	}
	return &Edit{File: ff, Cohort: c, From: rec.To, To: rec.From, Undo: true, before: now, after: prev}, nil
}

// Undo puts back the version the last Move replaced (once). It does not
// check gates: use PrepareUndo and Check.
func (ff FlagFile) Undo() error {
	e, err := ff.PrepareUndo()
	if err != nil {
		return err
	}
	return e.Apply()
}

func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cutover: %w", err)
	}
	return data, nil
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
		for _, k := range []string{flags.DefaultWriteFlag, flags.DefaultReadFlag} {
			if _, boolean := all[k]; boolean {
				return nil, nil, fmt.Errorf("cutover: flag file %s holds the boolean scheme (%s, %s), not the string flag %q: pgshift move edits a string stage flag only; change the two flags yourself and gate the change with pgshift preflight --from STAGE --to STAGE",
					ff.Path, flags.DefaultWriteFlag, flags.DefaultReadFlag, ff.flag())
			}
		}
		return nil, nil, fmt.Errorf("cutover: flag file %s has no flag %q: name the stage flag with --flag", ff.Path, ff.flag())
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

// variantFor returns the name of a variant that holds stage s (the one
// named after s first), adding one named after s when none does.
func (f *flagDef) variantFor(s flags.Stage) (string, error) {
	vs, _ := f.def["variants"].(map[string]any)
	if vs == nil {
		vs = map[string]any{}
		f.def["variants"] = vs
	}
	if v, ok := vs[s.String()]; ok {
		if st, ok := v.(string); ok {
			if parsed, err := flags.ParseStage(st); err == nil && parsed == s {
				return s.String(), nil
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(vs)) {
		if st, ok := vs[name].(string); ok {
			if parsed, err := flags.ParseStage(st); err == nil && parsed == s {
				return name, nil
			}
		}
	}
	if _, taken := vs[s.String()]; taken {
		return "", fmt.Errorf("cutover: flag %s in %s: variant %q holds another stage, and no variant holds %v: add one", f.name, f.path, s.String(), s)
	}
	vs[s.String()] = s.String()
	return s.String(), nil
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
// gives stage to, or in a new one ahead of the others. A targeting that is
// not an "if" becomes the final value of one.
func (f *flagDef) moveKeys(keys []string, to string) {
	ifs := f.branches()
	if t, ok := f.def["targeting"].(map[string]any); ok && len(t) > 0 && ifs == nil {
		// A targeting that is no "if" (a fractional, say) becomes the
		// final value of one.
		ifs = []any{t}
	}
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
		if list, ok := keyList(kept[i]); ok && kept[i+1] == to {
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
	f.setBranches(append([]any{keyCondition(listed), to}, kept...))
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
	if t, ok := f.def["targeting"].(map[string]any); ok && len(t) > 0 && ifs == nil {
		return "", fmt.Errorf("cutover: the targeting of flag %s in %s is a rollout or an expression, not a stage: move percentages of it", f.name, f.path)
	}
	v, _ := f.def["defaultVariant"].(string)
	return v, nil
}

func (f *flagDef) setRule(n int, to string) error {
	if _, err := f.cohortVariant(Cohort{Rule: n}); err != nil {
		return err
	}
	f.branches()[2*n-1] = to
	return nil
}

func (f *flagDef) setDefault(to string) error {
	if _, err := f.cohortVariant(Cohort{Default: true}); err != nil {
		return err
	}
	if ifs := f.branches(); len(ifs)%2 == 1 {
		ifs[len(ifs)-1] = to
		return nil
	}
	f.def["defaultVariant"] = to
	return nil
}
