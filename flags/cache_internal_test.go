package flags

import (
	"fmt"
	"testing"
	"time"
)

func TestDecisionsBounded(t *testing.T) {
	t.Parallel()
	c := newDecisions(100, 0)
	for i := range 1000 {
		c.put(fmt.Sprint(i), Decision{Stage: StageLive}, c.begin())
	}
	if n := c.len(); n != 100 {
		t.Errorf("%d entries, want the bound 100", n)
	}
}

func TestDecisionsDropRacingPut(t *testing.T) {
	t.Parallel()
	c := newDecisions(10, 0)
	s := c.begin()
	c.invalidate() // the configuration changed while "u" was evaluated
	c.put("u", Decision{Stage: StageLive}, s)
	if _, _, found := c.get("u"); found {
		t.Error("a decision evaluated before a configuration change was kept")
	}
	c.put("u", Decision{Stage: StageLive}, c.begin())
	if _, fresh, _ := c.get("u"); !fresh {
		t.Error("a current decision is not fresh")
	}
	c.invalidate()
	if e, fresh, found := c.get("u"); fresh || !found || !e.good || e.d.Stage != StageLive {
		t.Errorf("after invalidate: %+v fresh=%v found=%v, want the stale last good decision", e, fresh, found)
	}
}

// fakeClock is the cache's clock, moved by the test.
type fakeClock struct{ t time.Duration }

func (c *fakeClock) now() time.Duration { return c.t }

func newTTLDecisions(ttl time.Duration) (*decisions, *fakeClock) {
	c := newDecisions(10, ttl)
	clock := &fakeClock{}
	c.now = clock.now
	return c, clock
}

// TestDecisionsTTL: a decision is fresh for the TTL after its evaluation
// began, then only the last good one.
func TestDecisionsTTL(t *testing.T) {
	t.Parallel()
	c, clock := newTTLDecisions(time.Second)
	s := c.begin()
	clock.t += 300 * time.Millisecond // the evaluation takes a while
	c.put("u", Decision{Stage: StageLive}, s)
	clock.t = 999 * time.Millisecond
	if _, fresh, _ := c.get("u"); !fresh {
		t.Error("fresh 999ms after the evaluation began, within a TTL of 1s: stale")
	}
	clock.t = time.Second
	if e, fresh, found := c.get("u"); fresh || !found || !e.good {
		t.Errorf("1s after the evaluation began: fresh=%v found=%v good=%v, want the stale last good decision", fresh, found, e.good)
	}
}

// TestDecisionsPaceFailures: with a TTL, a failure is fresh for the TTL
// and keeps the last good decision; without one it is not recorded.
func TestDecisionsPaceFailures(t *testing.T) {
	t.Parallel()
	down := &failure{cause: CauseProviderError, flag: DefaultStageFlag}
	c, clock := newTTLDecisions(time.Second)
	c.put("u", Decision{Stage: StageShadow}, c.begin())
	clock.t = 2 * time.Second
	c.putFailure("u", down, c.begin())
	e, fresh, _ := c.get("u")
	if !fresh || e.fail != down || !e.good || e.d.Stage != StageShadow {
		t.Errorf("after a failure: %+v fresh=%v, want a fresh failure beside the last good shadow", e, fresh)
	}
	clock.t = 3 * time.Second
	if _, fresh, _ := c.get("u"); fresh {
		t.Error("a failure is still fresh a TTL later: the provider would never be asked again")
	}
	c.putFailure("new", down, c.begin())
	if e, fresh, _ := c.get("new"); !fresh || e.good {
		t.Errorf("a user's first failure: %+v fresh=%v, want a fresh failure with no good decision", e, fresh)
	}
	c.put("u", Decision{Stage: StageLive}, c.begin())
	if e, fresh, _ := c.get("u"); !fresh || e.fail != nil || e.d.Stage != StageLive {
		t.Errorf("after the provider answered again: %+v fresh=%v, want fresh live", e, fresh)
	}

	noTTL := newDecisions(10, 0)
	noTTL.putFailure("u", down, noTTL.begin())
	if _, _, found := noTTL.get("u"); found {
		t.Error("without a TTL a failure was recorded")
	}
}

// TestDecisionsKeepLatestOutcome: an evaluation that began earlier but
// finished later does not overwrite the outcome of a later one.
func TestDecisionsKeepLatestOutcome(t *testing.T) {
	t.Parallel()
	c, clock := newTTLDecisions(time.Minute)
	early := c.begin()
	clock.t = time.Second
	c.put("u", Decision{Stage: StageLive}, c.begin())
	c.putFailure("u", &failure{cause: CauseProviderError}, early)
	if e, _, _ := c.get("u"); e.fail != nil || e.d.Stage != StageLive {
		t.Errorf("%+v, want the later evaluation's live decision", e)
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
