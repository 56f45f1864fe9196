package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDemoNeverPrintsPasswordWithUnencodedAt: pgx reads the tail of a
// password with an unencoded '@' as part of the host, and its error names
// that host; the demo's output has neither part of the password.
func TestDemoNeverPrintsPasswordWithUnencodedAt(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	url := "postgres://app:hunter2@S3cretTail@db.invalid/app?connect_timeout=2"
	code := run(context.Background(), []string{"serve", "-addr", "127.0.0.1:0"}, env{stdout: &out, stderr: &errOut,
		getenv: func(k string) string {
			switch k {
			case "PGSHIFT_OLD_URL", "PGSHIFT_NEW_URL":
				return url
			}
			return ""
		}})
	if code != 2 || !strings.Contains(errOut.String(), "connect to the old database") {
		t.Fatalf("code %d, want 2 and the connection error\nstdout: %s\nstderr: %s", code, out.String(), errOut.String())
	}
	for _, part := range []string{"hunter2", "S3cretTail"} {
		if strings.Contains(out.String()+errOut.String(), part) {
			t.Fatalf("%q in the output:\nstdout: %s\nstderr: %s", part, out.String(), errOut.String())
		}
	}
}
