package flags

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCacheSize is how many users' decisions an Evaluator keeps unless
// WithCacheSize says otherwise.
const DefaultCacheSize = 10_000

// decisions holds, per user (cache key), the last good decision and the
// outcome of the latest evaluation, tagged with the configuration
// generation it was made under and, with a TTL, the time it was made. An
// entry of the current generation (and younger than the TTL) is fresh: a
// cache hit when the latest evaluation succeeded, a paced failure when it
// did not. An older entry only holds the last good decision, used when the
// provider cannot decide. A configuration change bumps the generation,
// which makes every entry stale at once without walking the map.
//
// The map holds at most max entries; inserting into a full map evicts an
// arbitrary entry (Go's map iteration starts at a random position), which
// costs O(1) and needs no bookkeeping on the hit path.
type decisions struct {
	gen atomic.Uint64
	max int
	// ttl bounds how long an entry stays fresh; 0 means until the
	// generation changes. With 0 the clock is never read.
	ttl time.Duration
	now func() time.Duration // monotonic; tests replace it

	mu sync.RWMutex
	m  map[string]entry
}

type entry struct {
	d    Decision // the last good decision, when good
	good bool
	// fail is why the latest evaluation produced no decision; nil when it
	// succeeded. Kept only with a TTL, to pace a failing provider.
	fail *failure
	gen  uint64        // generation of the latest evaluation
	at   time.Duration // when the latest evaluation began (with a TTL)
}

func newDecisions(maxEntries int, ttl time.Duration) *decisions {
	start := time.Now()
	return &decisions{
		max: maxEntries,
		ttl: ttl,
		now: func() time.Duration { return time.Since(start) },
		m:   make(map[string]entry),
	}
}

// stamp is the configuration generation and time an evaluation began at.
type stamp struct {
	gen uint64
	at  time.Duration
}

// begin returns the stamp for an evaluation that starts now; pass it to put
// or putFailure with the evaluation's outcome.
func (c *decisions) begin() stamp {
	s := stamp{gen: c.gen.Load()}
	if c.ttl > 0 {
		s.at = c.now()
	}
	return s
}

// invalidate makes every entry stale (its decision still usable as last good).
func (c *decisions) invalidate() { c.gen.Add(1) }

// get returns the entry for key and whether it is fresh.
func (c *decisions) get(key string) (e entry, fresh, found bool) {
	c.mu.RLock()
	e, found = c.m[key]
	c.mu.RUnlock()
	fresh = found && e.gen == c.gen.Load() && (c.ttl <= 0 || c.now()-e.at < c.ttl)
	return e, fresh, found
}

// put records a good decision from an evaluation stamped s. A decision that
// raced with a configuration change is dropped: it may have been made from
// the old configuration and must not be served as current.
func (c *decisions) put(key string, d Decision, s stamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.slot(key, s); ok {
		e.d, e.good, e.fail = d, true, nil
		c.set(key, e, s)
	}
}

// putFailure records that an evaluation stamped s failed, keeping the last
// good decision. Only with a TTL: then the failure is answered without
// asking the provider again until the TTL has passed (or the configuration
// changes).
func (c *decisions) putFailure(key string, f *failure, s stamp) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.slot(key, s); ok {
		e.fail = f
		c.set(key, e, s)
	}
}

// slot returns key's entry for an update by an evaluation stamped s, and
// whether to make it: not when nothing is kept, the configuration changed
// since s, or a later evaluation of the user already recorded its outcome.
// It makes room when the key is new and the map full. c.mu is held.
func (c *decisions) slot(key string, s stamp) (entry, bool) {
	if c.max <= 0 || s.gen != c.gen.Load() {
		return entry{}, false
	}
	e, ok := c.m[key]
	if ok && e.gen == s.gen && e.at > s.at {
		return entry{}, false
	}
	if !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	return e, true
}

// set stores e as the outcome of the evaluation stamped s. c.mu is held.
func (c *decisions) set(key string, e entry, s stamp) {
	e.gen, e.at = s.gen, s.at
	c.m[key] = e
}

// len returns the number of entries, fresh or not.
func (c *decisions) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
