package flags

import (
	"fmt"
	"testing"
)

func TestDecisionsBounded(t *testing.T) {
	t.Parallel()
	c := newDecisions(100)
	for i := range 1000 {
		c.put(fmt.Sprint(i), Decision{Stage: StageLive}, c.generation())
	}
	if n := c.len(); n != 100 {
		t.Errorf("%d entries, want the bound 100", n)
	}
}

func TestDecisionsDropRacingPut(t *testing.T) {
	t.Parallel()
	c := newDecisions(10)
	gen := c.generation()
	c.invalidate() // the configuration changed while "u" was evaluated
	c.put("u", Decision{Stage: StageLive}, gen)
	if _, _, found := c.get("u"); found {
		t.Error("a decision evaluated before a configuration change was kept")
	}
	c.put("u", Decision{Stage: StageLive}, c.generation())
	if _, fresh, _ := c.get("u"); !fresh {
		t.Error("a current decision is not fresh")
	}
	c.invalidate()
	if d, fresh, found := c.get("u"); fresh || !found || d.Stage != StageLive {
		t.Errorf("after invalidate: %v fresh=%v found=%v, want the stale last good decision", d, fresh, found)
	}
}

func TestCacheKeyIgnoresMapOrder(t *testing.T) {
	t.Parallel()
	a := map[string]any{"a": 1, "b": "x", "c": true, "d": 1.5}
	b := map[string]any{"d": 1.5, "c": true, "b": "x", "a": 1}
	if cacheKey("k", a) != cacheKey("k", b) {
		t.Error("equal attributes give different keys")
	}
}
