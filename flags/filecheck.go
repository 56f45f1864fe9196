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
func EvaluateFile(path string, data []byte, flagKey, routingKey string, attrs map[string]any) (Stage, error) {
	if flagKey == "" {
		flagKey = DefaultStageFlag
	}
	chk, err := newChecker(stringScheme(flagKey))
	if err != nil {
		return StageOff, err
	}
	if _, err := chk.check(path, data); err != nil {
		return StageOff, err
	}
	evalCtx := make(map[string]any, len(attrs)+1)
	for k, v := range attrs {
		evalCtx[k] = v
	}
	evalCtx["targetingKey"] = routingKey
	chk.mu.Lock()
	value, _, _, _, err := chk.scratch.ResolveStringValue(context.Background(), "", flagKey, evalCtx)
	chk.mu.Unlock()
	if err != nil {
		return StageOff, fmt.Errorf("flag file %s: flag %s for %q: %w", path, flagKey, routingKey, err)
	}
	s, err := ParseStage(value)
	if err != nil {
		return StageOff, fmt.Errorf("flag file %s: flag %s for %q: %w", path, flagKey, routingKey, err)
	}
	return s, nil
}
