package flags

import (
	"sync"
	"sync/atomic"
)

// DefaultCacheSize is how many users' decisions an Evaluator keeps unless
// WithCacheSize says otherwise.
const DefaultCacheSize = 10_000

// decisions holds the last good decision per user (cache key), tagged with
// the configuration generation it was made under. An entry of the current
// generation is a cache hit; an entry of an older one is only the last good
// decision, used when the provider cannot decide. A configuration change
// bumps the generation, which invalidates every entry at once without
// walking the map.
//
// The map holds at most max entries; inserting into a full map evicts an
// arbitrary entry (Go's map iteration starts at a random position), which
// costs O(1) and needs no bookkeeping on the hit path.
type decisions struct {
	gen atomic.Uint64
	max int

	mu sync.RWMutex
	m  map[string]entry
}

type entry struct {
	d   Decision
	gen uint64
}

func newDecisions(maxEntries int) *decisions {
	return &decisions{max: maxEntries, m: make(map[string]entry)}
}

// generation returns the current configuration generation; pass it to put
// for a decision evaluated after this call.
func (c *decisions) generation() uint64 { return c.gen.Load() }

// invalidate makes every cached decision stale (still usable as last good).
func (c *decisions) invalidate() { c.gen.Add(1) }

// get returns the entry for key and whether it is of the current generation.
func (c *decisions) get(key string) (d Decision, fresh, found bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	return e.d, ok && e.gen == c.gen.Load(), ok
}

// put records a good decision evaluated under generation gen. A decision
// that raced with a configuration change is dropped: it may have been made
// from the old configuration and must not be served as current.
func (c *decisions) put(key string, d Decision, gen uint64) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen.Load() {
		return
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = entry{d: d, gen: gen}
}

// len returns the number of entries, fresh or not.
func (c *decisions) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
