package dualwrite

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A warning about a routing key repeats at most once per keyWarnEvery, with
// how often it was left out; other keys and other warnings are not held back.
func TestKeyWarningsLogOncePerKeyPerInterval(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := newKeyWarnings(slog.New(slog.NewTextHandler(&buf, nil)))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return now }
	for range 5 {
		w.warn("user1", "refused")
	}
	w.warn("user2", "refused")
	w.warn("user1", "cannot move")
	now = now.Add(keyWarnEvery)
	w.warn("user1", "refused")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("logged %d lines, want 4 (user1 refused, user2 refused, user1 cannot move, user1 refused again):\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[3], "routing_key=user1") || !strings.Contains(lines[3], "repeated=4") {
		t.Fatalf("the repeat after the interval: %q, want routing_key=user1 and repeated=4", lines[3])
	}
	if strings.Contains(lines[0], "repeated") {
		t.Fatalf("the first warning: %q, want no repeated count", lines[0])
	}
}

// Past keyWarningsKept warnings the oldest are forgotten: memory stays
// bounded whatever the number of keys in trouble.
func TestKeyWarningsStayBounded(t *testing.T) {
	t.Parallel()
	w := newKeyWarnings(slog.New(slog.DiscardHandler))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w.now = func() time.Time { return now }
	for i := range 3 * keyWarningsKept {
		if i%keyWarningsKept == 0 {
			now = now.Add(time.Second)
		}
		w.warn("user"+strconv.Itoa(i), "refused")
	}
	if n := len(w.seen); n > keyWarningsKept {
		t.Fatalf("%d warnings kept, want at most %d", n, keyWarningsKept)
	}
}
