package main

import (
	"io"
	"net/url"
	"regexp"
	"strings"
)

// mask replaces a password wherever it would appear.
const mask = "xxxxx"

// A redactor removes passwords from text: the passwords of the connection
// strings it was given, wherever they appear, and any password written in
// URL or keyword=value form.
type redactor struct {
	secrets []string
}

var (
	urlPassword     = regexp.MustCompile(`(?i)(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@`)
	keywordPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
)

// newRedactor knows the passwords in connection strings conns (URLs or
// keyword=value strings; anything else is ignored).
func newRedactor(conns ...string) *redactor {
	r := &redactor{}
	for _, c := range conns {
		if u, err := url.Parse(c); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok && p != "" {
				r.secrets = append(r.secrets, p, url.QueryEscape(p), url.PathEscape(p))
			}
		}
		for _, m := range keywordPassword.FindAllStringSubmatch(c, -1) {
			p := strings.Trim(m[2], "'")
			if p != "" {
				r.secrets = append(r.secrets, p)
			}
		}
		if m := regexp.MustCompile(`://[^:/@\s]*:([^@\s]*)@`).FindStringSubmatch(c); m != nil && m[1] != "" {
			r.secrets = append(r.secrets, m[1]) // a URL too broken for url.Parse
		}
	}
	return r
}

// String returns s without passwords.
func (r *redactor) String(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}"+mask+"@")
	s = keywordPassword.ReplaceAllString(s, "${1}"+mask)
	for _, p := range r.secrets {
		s = strings.ReplaceAll(s, p, mask)
	}
	return s
}

// Writer wraps w so that everything written through it is redacted. Each
// Write is redacted on its own: callers write whole messages.
func (r *redactor) Writer(w io.Writer) io.Writer { return redactingWriter{r, w} }

type redactingWriter struct {
	r *redactor
	w io.Writer
}

func (w redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.r.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// connectionStrings are the values in args and the environment that may
// hold a password: every argument, and PGSHIFT_*_URL and PGPASSWORD.
func connectionStrings(args []string, getenv func(string) string) []string {
	out := append([]string{}, args...)
	for _, k := range []string{"PGSHIFT_OLD_URL", "PGSHIFT_NEW_URL"} {
		out = append(out, getenv(k))
	}
	if p := getenv("PGPASSWORD"); p != "" {
		out = append(out, "password="+p)
	}
	return out
}
