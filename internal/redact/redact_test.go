package redact_test

import (
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/redact"
)

func TestRedactorMasksPasswords(t *testing.T) {
	t.Parallel()
	r := redact.New("postgres://u:p%40ss@h/db", "host=h password='kw pw' user=u")
	for in, want := range map[string]string{
		"dial postgres://u:p%40ss@h/db failed":  "dial postgres://u:xxxxx@h/db failed",
		"auth failed for p@ss":                  "auth failed for xxxxx",
		"host=h password='kw pw' user=u":        "host=h password=xxxxx user=u",
		"the kw pw leaked":                      "the xxxxx leaked",
		"postgresql://a:other@h unknown secret": "postgresql://a:xxxxx@h unknown secret",
		"nothing to hide in postgres://u@h/db":  "nothing to hide in postgres://u@h/db",
	} {
		if got := r.String(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUnencodedAtNeverLeaks: pgx reads postgres://app:hunter2@S3cretTail@db
// as password "hunter2" and host "S3cretTail@db", a URL parser as password
// "hunter2@S3cretTail"; no part of it survives redaction, in the errors
// either reading produces.
func TestUnencodedAtNeverLeaks(t *testing.T) {
	t.Parallel()
	const conn = "postgres://app:hunter2@S3cretTail@db.example:5432/app"
	r := redact.New(conn)
	for _, in := range []string{
		`failed to connect to host=S3cretTail@db.example user=app database=app: hostname resolving error (lookup S3cretTail@db.example: no such host)`,
		`password authentication failed for user "app" (password hunter2)`,
		`the password was hunter2@S3cretTail`,
		`given ` + conn,
		`given postgresql://app:hunter2@S3cretTail@db.example`,
	} {
		got := r.String(in)
		for _, part := range []string{"hunter2", "S3cretTail"} {
			if strings.Contains(got, part) {
				t.Errorf("redact(%q) = %q: %q leaks", in, got, part)
			}
		}
	}
}

// TestShortFragmentsDoNotGarble: a password that is, or breaks into, a
// fragment of a letter or two (p@ss:w0rd read up to its first '@' is "p")
// is masked in connection strings, and the rest of the output is left as
// it was.
func TestShortFragmentsDoNotGarble(t *testing.T) {
	t.Parallel()
	r := redact.New("postgres://u:p@ss:w0rd@h/db", "postgres://v:ab@h/db")
	for in, want := range map[string]string{
		"pgshift verify: connect to old: cannot parse": "pgshift verify: connect to old: cannot parse",
		"dial postgres://u:p@ss:w0rd@h/db":             "dial postgres://u:xxxxx@h/db",
		"the password p@ss:w0rd leaked":                "the password xxxxx leaked",
		"dial postgres://v:ab@h/db: happy path":        "dial postgres://v:xxxxx@h/db: happy path",
	} {
		if got := r.String(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRedactorHidesPassword(f *testing.F) {
	f.Add("hunter2@S3cretTail", "db")
	f.Add("p@ss:w0rd", "h")
	f.Add("s p a c e", "h")
	// Passwords of printable characters, unencoded (the mistake this is
	// about), and plain host names.
	printable := func(s string) bool {
		return !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' })
	}
	f.Fuzz(func(t *testing.T, password, host string) {
		if len(password) < redact.MinSecret || !printable(password) || strings.ContainsAny(password, "/'\\") ||
			host == "" || strings.Trim(host, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
			return
		}
		conn := "postgres://app:" + password + "@" + host + "/app"
		got := redact.New(conn).String("error: " + conn + " and " + password)
		if strings.Contains(got, password) {
			t.Fatalf("%q leaks in %q", password, got)
		}
	})
}
