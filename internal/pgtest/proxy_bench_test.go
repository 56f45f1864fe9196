package pgtest_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgshift/pgshift/internal/pgtest"
)

// BenchmarkProxyDelay measures what a Delay(500us) proxy adds to a round
// trip (SELECT 1), with one connection and with eight at once, beside the
// same on a direct connection: the round trip should grow by about 1 ms
// (500 us each way) whatever the number of connections, and the process's
// processor time per round trip (cpu-us/op, this process only: the proxy
// and the client) should stay small, since waiting chunks sleep.
func BenchmarkProxyDelay(b *testing.B) {
	db := pgtest.NewDB(b, oldServerOf(b), pgtest.Empty)
	for _, conns := range []int{1, 8} {
		for _, delayed := range []bool{false, true} {
			name := fmt.Sprintf("conns=%d/direct", conns)
			if delayed {
				name = fmt.Sprintf("conns=%d/delay=500us", conns)
			}
			b.Run(name, func(b *testing.B) {
				p := pgtest.NewProxy(b, targetOf(b, db))
				cfg := proxiedConfig(b, db, p)
				if delayed {
					p.Delay(500 * time.Microsecond)
				} else {
					direct, err := pgx.ParseConfig(db.URL)
					if err != nil {
						b.Fatal(err)
					}
					cfg = direct
				}
				cs := make([]*pgx.Conn, conns)
				for i := range cs {
					c, err := pgx.ConnectConfig(context.Background(), cfg)
					if err != nil {
						b.Fatal(err)
					}
					defer func() { _ = c.Close(context.Background()) }()
					cs[i] = c
				}
				cpu0 := processCPU()
				b.ResetTimer()
				var wg sync.WaitGroup
				for i, c := range cs {
					n := b.N / conns
					if i < b.N%conns {
						n++
					}
					wg.Go(func() {
						for range n {
							if _, err := c.Exec(context.Background(), "SELECT 1"); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				// Per connection: each one's round trip, not the aggregate.
				b.ReportMetric(float64(b.Elapsed().Microseconds())*float64(conns)/float64(b.N), "us/roundtrip")
				b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
			})
		}
	}
}

// processCPU is this process's user and system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
