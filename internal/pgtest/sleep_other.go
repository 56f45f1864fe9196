//go:build !linux

package pgtest

import "time"

// sleepSlack: time.Sleep can wake up to about a millisecond late; the rest
// is spun.
const sleepSlack = 1500 * time.Microsecond

func sleepFor(d time.Duration) { time.Sleep(d) }
