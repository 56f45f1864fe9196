package pgtest

import (
	"syscall"
	"time"
)

// sleepSlack is how much later than asked nanosleep(2) usually returns on
// a VM (timer slack and wake-up: 50-100 us on the 2-core machine the
// benchmarks ran on); sleepFor asks for that much less and spins the rest.
const sleepSlack = 50 * time.Microsecond

// sleepFor blocks the calling thread for about d with nanosleep(2), which
// keeps microseconds where time.Sleep rounds up to a millisecond on some
// VMs (Go's timers wait in epoll with millisecond timeouts). The thread
// sleeps, so a waiting chunk costs no processor time.
func sleepFor(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var left syscall.Timespec
		if err := syscall.Nanosleep(&ts, &left); err != syscall.EINTR {
			return
		}
		ts = left
	}
}
