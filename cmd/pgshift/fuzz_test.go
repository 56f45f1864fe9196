package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzArgs runs the CLI on arbitrary arguments, with connection strings that
// carry a password and point at a closed loopback port: whatever the
// arguments, it must not panic, must exit 0, 1 or 2, and must never print the
// password.
//
//	go test -run '^$' -fuzz FuzzArgs -fuzztime 30s ./cmd/pgshift
func FuzzArgs(f *testing.F) {
	for _, seed := range []string{
		"verify", "backfill --workers 0", "verify --repair --source sideways", "status --json",
		"schema-diff --table", "sync-sequences --gap -5", "help verify", "nope", "repair -v",
		"backfill --chunk-size abc", "verify --table 's3cret'",
	} {
		f.Add(seed)
	}
	const password = "s3cret-pw"
	vars := map[string]string{
		"PGSHIFT_OLD_URL": "postgres://app:" + password + "@127.0.0.1:1/app?connect_timeout=1",
		"PGSHIFT_NEW_URL": "host=127.0.0.1 port=1 user=app password=" + password + " dbname=app connect_timeout=1",
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		for _, a := range args {
			// Connection strings come from the environment only: the fuzzer
			// must not point the CLI at any other address.
			if strings.Contains(strings.ToLower(a), "old") || strings.Contains(strings.ToLower(a), "new") {
				return
			}
		}
		var out, errOut bytes.Buffer
		code := runWith(context.Background(), args, &env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }})
		if code < 0 || code > 2 {
			t.Fatalf("exit status %d for %q", code, args)
		}
		if strings.Contains(out.String()+errOut.String(), password) {
			t.Fatalf("password printed for %q:\n%s%s", args, out.String(), errOut.String())
		}
	})
}
