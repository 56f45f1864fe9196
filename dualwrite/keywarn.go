package dualwrite

import (
	"log/slog"
	"sync"
	"time"
)

// keyWarnEvery is how often one warning about one routing key is logged
// while it repeats: during an outage every call of a refused or uncaught key
// would log it otherwise, once per call.
const keyWarnEvery = 30 * time.Second

// keyWarnings logs each warning about a routing key at most once per
// keyWarnEvery, with the number of times it was left out since ("repeated").
type keyWarnings struct {
	log *slog.Logger
	now func() time.Time

	mu   sync.Mutex
	seen map[keyWarning]*keyWarned
}

type keyWarning struct{ msg, key string }

type keyWarned struct {
	at       time.Time
	repeated int
}

// keyWarningsKept bounds the warnings remembered: past it the oldest are
// forgotten (a key among many in trouble may then be logged again sooner).
const keyWarningsKept = 10000

func newKeyWarnings(log *slog.Logger) *keyWarnings {
	return &keyWarnings{log: log, now: time.Now, seen: map[keyWarning]*keyWarned{}}
}

// warn logs msg about routing key key with args, unless it was logged less
// than keyWarnEvery ago.
func (w *keyWarnings) warn(key, msg string, args ...any) {
	now := w.now()
	id := keyWarning{msg, key}
	w.mu.Lock()
	last := w.seen[id]
	if last != nil && now.Sub(last.at) < keyWarnEvery {
		last.repeated++
		w.mu.Unlock()
		return
	}
	repeated := 0
	if last != nil {
		repeated = last.repeated
	} else if len(w.seen) >= keyWarningsKept {
		w.forgetOld(now)
	}
	w.seen[id] = &keyWarned{at: now}
	w.mu.Unlock()
	args = append([]any{"routing_key", key}, args...)
	if repeated > 0 {
		args = append(args, "repeated", repeated)
	}
	w.log.Warn(msg, args...)
}

// forgetOld drops the warnings logged more than keyWarnEvery ago, or every
// one if none is that old. Called with w.mu held.
func (w *keyWarnings) forgetOld(now time.Time) {
	for id, last := range w.seen {
		if now.Sub(last.at) >= keyWarnEvery {
			delete(w.seen, id)
		}
	}
	if len(w.seen) >= keyWarningsKept {
		clear(w.seen)
	}
}
