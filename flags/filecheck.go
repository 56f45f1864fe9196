package flags

import (
	"context"
	"fmt"
)

// CheckFile reports whether data is a flag file NewFileEvaluator would take
// with opts (the scheme and its flag keys; the string flag DefaultStageFlag
// when none): JSON (or YAML, by path's extension) following the flagd
// schema, which flagd accepts, and whose stage flags can give only values
// that map to a stage. The error names path and what is wrong. Tools that
// write flag files (pgshift move) check them with it before they replace
// one.
func CheckFile(path string, data []byte, opts ...Option) error {
	chk, err := newChecker(newConfig(opts).scheme())
	if err != nil {
		return err
	}
	_, err = chk.check(path, data)
	return err
}

// EvaluateFile returns the stage that the string flag flagKey
// (DefaultStageFlag when empty) of the flag file data gives the user with
// routingKey and attrs, as the file evaluator would, without starting one.
// To evaluate many users, load the file once with LoadFileRules.
func EvaluateFile(path string, data []byte, flagKey, routingKey string, attrs map[string]any) (Stage, error) {
	r, err := LoadFileRules(path, data, flagKey)
	if err != nil {
		return StageOff, err
	}
	return r.Stage(routingKey, attrs)
}

// FileRules are the rules of one version of a flag file, checked and loaded
// once, giving any user's stage as the file evaluator would with that
// version. Tools that compare versions (pgshift's gates count the users a
// move changes) evaluate many users with it. It is safe for concurrent use.
type FileRules struct {
	path, flagKey string
	chk           *checker
}

// LoadFileRules checks data as CheckFile does (the string scheme, flag
// flagKey, DefaultStageFlag when empty) and loads its rules.
func LoadFileRules(path string, data []byte, flagKey string) (*FileRules, error) {
	if flagKey == "" {
		flagKey = DefaultStageFlag
	}
	chk, err := newChecker(stringScheme(flagKey))
	if err != nil {
		return nil, err
	}
	if _, err := chk.check(path, data); err != nil {
		return nil, err
	}
	return &FileRules{path: path, flagKey: flagKey, chk: chk}, nil
}

// Stage returns the stage the rules give the user with routingKey and
// attrs.
func (r *FileRules) Stage(routingKey string, attrs map[string]any) (Stage, error) {
	evalCtx := make(map[string]any, len(attrs)+1)
	for k, v := range attrs {
		evalCtx[k] = v
	}
	evalCtx["targetingKey"] = routingKey
	r.chk.mu.Lock()
	value, _, _, _, err := r.chk.scratch.ResolveStringValue(context.Background(), "", r.flagKey, evalCtx)
	r.chk.mu.Unlock()
	if err != nil {
		return StageOff, fmt.Errorf("flag file %s: flag %s for %q: %w", r.path, r.flagKey, routingKey, err)
	}
	s, err := ParseStage(value)
	if err != nil {
		return StageOff, fmt.Errorf("flag file %s: flag %s for %q: %w", r.path, r.flagKey, routingKey, err)
	}
	return s, nil
}
