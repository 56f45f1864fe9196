package providers_test

import (
	"fmt"
	"testing"

	"github.com/pgshift/pgshift/flags"
)

// TestDemoRollout checks that the relay proxy's flag file for `go run
// ./demo` (demo/flags.goff.yaml) holds the demo's rollout
// (demo/flags.json): the same stages for testers and the attribute rule,
// and shadow or dualwrite for everyone else, through the relay proxy as the
// demo reads it.
func TestDemoRollout(t *testing.T) {
	t.Parallel()
	file := flagdFile.start(t, "../demo/flags.json", quiet())
	remote := overOFREP.start(t, "demo/flags.goff.yaml", quiet())
	for _, u := range []struct {
		key   string
		attrs map[string]any
	}{
		{"123", nil},
		{"456", map[string]any{"country": "DE", "plan": "free"}},
		{"789", map[string]any{"country": "IN", "plan": "pro"}},
		{"5", map[string]any{"country": "US", "plan": "pro"}},
	} {
		want := file.Stage(user(u.key, u.attrs))
		if got := remote.Stage(user(u.key, u.attrs)); got != want {
			t.Errorf("user %s %v: %v through the relay proxy, %v from demo/flags.json", u.key, u.attrs, got, want)
		}
	}
	shadow := 0
	const n = 1000
	for i := range n {
		switch s := remote.Stage(user(fmt.Sprintf("account-%d", i), map[string]any{"country": "FR", "plan": "free"})); s {
		case flags.StageShadow:
			shadow++
		case flags.StageDualWrite:
		default:
			t.Fatalf("account-%d: %v, want shadow or dualwrite", i, s)
		}
	}
	if shadow < 150 || shadow > 250 {
		t.Errorf("%d of %d others in shadow, want about 20%%", shadow, n)
	}
}
