package rowsync

import (
	"context"
	"sync"
)

// ForEach calls fn(i) for i in [0, n) on at most workers goroutines at once
// and returns when all calls have; once ctx is done no further call starts.
// Backfill and verify use it to work on several tables at once.
func ForEach(ctx context.Context, n, workers int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(workers, n)) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}
