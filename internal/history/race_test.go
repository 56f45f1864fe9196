//go:build race

package history_test

// raceDetector: the race detector makes each history several times
// slower, so short mode runs fewer of them.
const raceDetector = true
