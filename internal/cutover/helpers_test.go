package cutover_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-feature/flagd/core/pkg/evaluator"
	"github.com/open-feature/flagd/core/pkg/logger"
	"github.com/open-feature/flagd/core/pkg/store"
	"github.com/open-feature/flagd/core/pkg/sync"

	"github.com/pgshift/pgshift/flags"
)

// testUser is a synthetic user: a routing key and its attributes.
type testUser struct {
	key   string
	attrs map[string]any
}

// plainUsers are n users with routing keys and no attributes.
func plainUsers(n int) []testUser {
	us := make([]testUser, n)
	for i := range us {
		us[i] = testUser{key: fmt.Sprint(100000 + i)}
	}
	return us
}

// stagesOf evaluates the stage flag of a flag file for every user with
// flagd's rules engine, the one the file evaluator runs (flags.EvaluateFile
// does the same for one user, at the cost of compiling the flagd schema).
func stagesOf(t *testing.T, data []byte, users []testUser) []flags.Stage {
	t.Helper()
	quiet := logger.NewLogger(nil, false)
	st, err := store.NewStore(quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := evaluator.NewJSON(quiet, st)
	if err := ev.SetState(sync.DataSync{FlagData: string(data), Source: "test"}); err != nil {
		t.Fatalf("flagd rejects the file: %v\n%s", err, data)
	}
	out := make([]flags.Stage, len(users))
	for i, u := range users {
		evalCtx := map[string]any{"targetingKey": u.key}
		for k, v := range u.attrs {
			evalCtx[k] = v
		}
		v, _, _, _, err := ev.ResolveStringValue(context.Background(), "", flags.DefaultStageFlag, evalCtx)
		if err != nil {
			t.Fatalf("user %s: %v\n%s", u.key, err, data)
		}
		s, err := flags.ParseStage(v)
		if err != nil {
			t.Fatalf("user %s: %v\n%s", u.key, err, data)
		}
		out[i] = s
	}
	return out
}

// transitions counts the users per (before, after) pair of stages that
// changed.
func transitions(before, after []flags.Stage) map[[2]flags.Stage]int {
	out := map[[2]flags.Stage]int{}
	for i := range before {
		if before[i] != after[i] {
			out[[2]flags.Stage{before[i], after[i]}]++
		}
	}
	return out
}
