package dualwrite

import (
	"sync"
	"time"
)

// follows orders the other side's copies of one routing key's writes.
//
// In dualwrite and shadow a write's copy on new (its "follow") runs after
// the caller has its answer, off the caller's path. A routing key's writes
// often depend on each other (a post after its user, a book after its
// author), and new checks its foreign keys as old did: so the follows of one
// routing key run one at a time, in the order their writes were
// acknowledged, and a write of the key that writes new on the caller's path
// (a NewRows insert) first waits for the key's follows in flight. A follow
// waits for the one before it at most Config.OtherTimeout; after that it
// runs anyway (a parent still missing on new then fails the child's copy,
// and the repair worker, which copies parents first, converges both).
//
// Writes without a routing key are not ordered against each other: nothing
// says which of them depend on which, and ordering them all would make every
// anonymous write's copy wait for every other one.
type follows struct {
	mu   sync.Mutex
	tail map[string]chan struct{} // closed when the key's last follow has ended
}

func newFollows() *follows { return &follows{tail: map[string]chan struct{}{}} }

// add queues a follow of key: it returns a function that waits (at most
// bound) for the follows queued before it, and one to call when it has
// ended.
func (q *follows) add(key string, bound time.Duration) (wait func(), done func()) {
	if key == "" {
		return func() {}, func() {}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	prev := q.tail[key]
	ch := make(chan struct{})
	q.tail[key] = ch
	return func() { waitBounded(prev, bound) }, func() {
		close(ch)
		q.mu.Lock()
		if q.tail[key] == ch {
			delete(q.tail, key)
		}
		q.mu.Unlock()
	}
}

// wait waits, at most bound, for the follows of key queued so far.
func (q *follows) wait(key string, bound time.Duration) {
	if key == "" {
		return
	}
	q.mu.Lock()
	prev := q.tail[key]
	q.mu.Unlock()
	waitBounded(prev, bound)
}

func waitBounded(ch <-chan struct{}, bound time.Duration) {
	if ch == nil {
		return
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}
