package main

import (
	"bytes"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestDemoRefusesCrossSiteForms: a body that does not say it is JSON (what
// a cross-site form sends, text/plain or form encoded, without a
// preflight) is refused with 415 and writes nothing; JSON is taken.
func TestDemoRefusesCrossSiteForms(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	body := `{"email":"csrf@example.com","name":"Forged"}`
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		r := ta.do(t, "POST", "/api/users", body, "X-User-ID: 123", "Content-Type: "+ct)
		if r.status != http.StatusUnsupportedMediaType {
			t.Fatalf("POST with Content-Type %q: status %d, want 415", ct, r.status)
		}
	}
	if r := ta.do(t, "POST", "/api/users", body, "X-User-ID: 123", "Content-Type: application/json; charset=utf-8"); r.status != http.StatusCreated {
		t.Fatalf("POST with JSON: status %d, want 201 (and the forged ones above wrote nothing)", r.status)
	}
}

// TestDemoSecurityHeaders: the dashboard and the API forbid framing by other
// sites, load only their own scripts, and are not sniffed.
func TestDemoSecurityHeaders(t *testing.T) {
	t.Parallel()
	ta := setup(t, demoFlags(t))
	for _, path := range []string{"/", "/app.js", "/api/dashboard"} {
		res, err := http.Get(ta.url + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		h := res.Header
		if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s: headers %v lack CSP, X-Frame-Options or nosniff", path, h)
		}
	}
}

// TestDemoServerTimesOutSlowBodies: the server bounds the whole request,
// not only its headers, so a body sent a byte at a time cannot hold a
// connection.
func TestDemoServerTimesOutSlowBodies(t *testing.T) {
	t.Parallel()
	srv := newServer(http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("server timeouts: header %v, read %v, idle %v; want all set", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout)
	}
}

// TestDemoWarnsWhenExposed: serving beyond loopback prints a warning that
// the API is unauthenticated; on loopback it prints nothing.
func TestDemoWarnsWhenExposed(t *testing.T) {
	t.Parallel()
	for addr, warn := range map[string]bool{"127.0.0.1:8080": false, "[::1]:8080": false, "0.0.0.0:8080": true, "[::]:8080": true, "192.0.2.1:80": true} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		warnIfExposed(&out, tcp)
		if got := strings.Contains(out.String(), "WARNING") && strings.Contains(out.String(), "no authentication"); got != warn {
			t.Errorf("%s: warning %v (%q), want %v", addr, got, out.String(), warn)
		}
	}
}
