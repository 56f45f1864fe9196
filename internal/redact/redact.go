// Package redact keeps passwords out of what pgshift prints: the CLI's and
// the demo's output streams go through a Redactor that knows the
// connection strings they were given.
//
// A Redactor masks, wherever they appear, the passwords of its connection
// strings as the driver (pgx) reads them and as a URL parser reads them
// (the two disagree on an unencoded '@': pgx, like libpq, ends the user
// part at the first '@', so postgres://app:pw@tail@db takes "tail@db" for
// the host, and that host is masked too), and any password written in URL
// or keyword=value form. Secrets shorter than MinSecret characters are
// masked only where they stand as a password in a connection string, not
// everywhere: replacing every "p" would garble the output and hide nothing.
//
//	r := redact.New(os.Getenv("PGSHIFT_OLD_URL"), os.Getenv("PGSHIFT_NEW_URL"))
//	log := slog.New(slog.NewTextHandler(r.Writer(os.Stderr), nil))
package redact

import (
	"cmp"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Mask replaces a password wherever it would appear.
const Mask = "xxxxx"

// MinSecret is the length from which a password is masked wherever it
// appears in the output, not only in connection strings.
const MinSecret = 4

// A Redactor removes passwords from text.
type Redactor struct {
	secrets []string
}

var (
	// A URL's password runs from the first ':' of the user part to the last
	// '@' before the path: whatever pgx or a URL parser may read as (part
	// of) it.
	urlPassword     = regexp.MustCompile(`(?i)(postgres(?:ql)?://[^:/@\s]*:)[^/\s]*@`)
	keywordPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)
	// The user part of a URL too broken for either parser.
	brokenURL = regexp.MustCompile(`://[^:/@\s]*:([^/\s]*)@`)
)

// New knows the passwords in connection strings conns (URLs or
// keyword=value strings; anything else is ignored).
func New(conns ...string) *Redactor {
	r := &Redactor{}
	add := func(s string) {
		if len(s) >= MinSecret {
			r.secrets = append(r.secrets, s, url.QueryEscape(s), url.PathEscape(s))
		}
	}
	for _, c := range conns {
		if c == "" {
			continue
		}
		// As the driver reads it.
		if cfg, err := pgconn.ParseConfig(c); err == nil {
			add(cfg.Password)
			for _, h := range append([]*pgconn.FallbackConfig{{Host: cfg.Host}}, cfg.Fallbacks...) {
				// A host with '@' in it is the tail of a password with an
				// unencoded '@'.
				if before, _, ok := cutLast(h.Host, "@"); ok {
					add(h.Host)
					add(before)
				}
			}
		}
		// As a URL parser reads it (up to the last '@').
		if u, err := url.Parse(c); err == nil && u.User != nil {
			if p, ok := u.User.Password(); ok {
				add(p)
			}
		}
		for _, m := range keywordPassword.FindAllStringSubmatch(c, -1) {
			add(strings.Trim(m[2], "'"))
		}
		if m := brokenURL.FindStringSubmatch(c); m != nil {
			add(m[1])
			for part := range strings.SplitSeq(m[1], "@") {
				add(part)
			}
		}
	}
	// Longest first, so that no shorter secret leaves part of a longer one.
	slices.SortFunc(r.secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	r.secrets = slices.Compact(r.secrets)
	return r
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// String returns s without passwords.
func (r *Redactor) String(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}"+Mask+"@")
	s = keywordPassword.ReplaceAllString(s, "${1}"+Mask)
	for _, p := range r.secrets {
		s = strings.ReplaceAll(s, p, Mask)
	}
	return s
}

// Writer wraps w so that everything written through it is redacted. Each
// Write is redacted on its own: callers write whole messages.
func (r *Redactor) Writer(w io.Writer) io.Writer { return redactingWriter{r, w} }

type redactingWriter struct {
	r *Redactor
	w io.Writer
}

func (w redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.r.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ConnectionStrings are the values in args and the environment that may
// hold a password: every argument, and PGSHIFT_OLD_URL, PGSHIFT_NEW_URL and
// PGPASSWORD.
func ConnectionStrings(args []string, getenv func(string) string) []string {
	out := append([]string{}, args...)
	for _, k := range []string{"PGSHIFT_OLD_URL", "PGSHIFT_NEW_URL"} {
		out = append(out, getenv(k))
	}
	if p := getenv("PGPASSWORD"); p != "" {
		out = append(out, "password="+p)
	}
	return out
}
