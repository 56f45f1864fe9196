package dualwrite

import (
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgshift/pgshift/flags"
)

// pools are one generation of the two databases' pools. Every call (and
// the work it leaves running: the other side's copy, a shadow read, a repair
// pass) holds the generation it started on, so that a generation can be
// retired (Facade.SetPool) once nothing uses it.
type pools struct {
	old, new *pgxpool.Pool

	mu      sync.Mutex
	users   int
	retired bool
	idle    chan struct{} // closed once retired and unused
}

func newPools(oldPool, newPool *pgxpool.Pool) *pools {
	return &pools{old: oldPool, new: newPool, idle: make(chan struct{})}
}

// side returns one side's pool.
func (p *pools) side(s flags.Side) *pgxpool.Pool {
	if s == flags.SideNew {
		return p.new
	}
	return p.old
}

// hold marks one more user of p; false when p is retired.
func (p *pools) hold() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retired {
		return false
	}
	p.users++
	return true
}

// holdMore marks one more user of p on behalf of a caller that holds it
// already (work it hands to a goroutine), retired or not.
func (p *pools) holdMore() {
	p.mu.Lock()
	p.users++
	p.mu.Unlock()
}

// release ends one use of p.
func (p *pools) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users--
	if p.retired && p.users == 0 {
		close(p.idle)
	}
}

// retire stops p from taking new users and waits for the ones it has.
func (p *pools) retire() {
	p.mu.Lock()
	p.retired = true
	if p.users == 0 {
		close(p.idle)
	}
	p.mu.Unlock()
	<-p.idle
}

// poolSet is the current generation of pools, shared by a facade and its
// repair worker.
type poolSet struct {
	cur    atomic.Pointer[pools]
	swapMu sync.Mutex
}

func newPoolSet(oldPool, newPool *pgxpool.Pool) *poolSet {
	s := &poolSet{}
	s.cur.Store(newPools(oldPool, newPool))
	return s
}

// acquire returns the current generation, held; release it when done.
func (s *poolSet) acquire() *pools {
	for {
		if p := s.cur.Load(); p.hold() {
			return p
		}
	}
}

// set makes pool the pool of side for new users and returns the previous
// one once its generation has no user left.
func (s *poolSet) set(side flags.Side, pool *pgxpool.Pool) *pgxpool.Pool {
	s.swapMu.Lock()
	defer s.swapMu.Unlock()
	prev := s.cur.Load()
	next := newPools(prev.old, prev.new)
	if side == flags.SideNew {
		next.new = pool
	} else {
		next.old = pool
	}
	s.cur.Store(next)
	prev.retire()
	return prev.side(side)
}
