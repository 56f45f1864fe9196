package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestVersionPrintsBuildAndGoVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--version", "-version", "version"} {
		code, out, _ := pgshift(t, arg)
		if code != exitOK || !strings.HasPrefix(out, "pgshift ") || !strings.Contains(out, runtime.Version()) || strings.Count(out, "\n") != 1 {
			t.Errorf("pgshift %s: code %d, %q; want one line naming the version and %s", arg, code, out, runtime.Version())
		}
	}
}

// blackhole is a TCP listener that never accepts a connection: the kernel
// completes the handshake, and nothing ever answers, as with a host whose
// firewall drops the packets after the port (or a wedged server).
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return fmt.Sprintf("postgres://postgres@%s/app?sslmode=disable", l.Addr())
}

// runBounded runs pgshift with environment getenv and fails the test when
// it has not returned within limit, which is far above the connect timeout
// under test: without one, pgshift would wait for the OS (minutes).
func runBounded(t *testing.T, limit time.Duration, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- runWith(ctx, args, &env{stdout: &out, stderr: &errOut, getenv: getenv})
	}()
	select {
	case code = <-done:
	case <-time.After(limit):
		cancel()
		<-done
		t.Fatalf("pgshift %v still connecting after %v: no connect timeout", args, limit)
	}
	return code, out.String(), errOut.String()
}

func TestConnectTimeoutAgainstServerThatNeverAnswers(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	cases := []struct {
		name   string
		getenv func(string) string
		url    func(string) string
		flags  []string
		want   string
	}{
		{"flag", noEnv, nil, []string{"--connect-timeout", "300ms"}, "no answer within 300ms"},
		{"env", func(k string) string {
			if k == "PGSHIFT_CONNECT_TIMEOUT" {
				return "400ms"
			}
			return ""
		}, nil, nil, "no answer within 400ms"},
		{"connect_timeout in the URL wins over the flag", noEnv, func(u string) string { return u + "&connect_timeout=1" },
			[]string{"--connect-timeout", "0"}, "no answer within 1s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			url := blackhole(t)
			if c.url != nil {
				url = c.url(url)
			}
			for _, cmd := range []string{"verify", "status"} {
				args := append([]string{cmd, "--json", "--old", url, "--new", url}, c.flags...)
				code, out, errOut := runBounded(t, time.Minute, c.getenv, args...)
				if code != exitError || !strings.Contains(errOut, "pgshift "+cmd+": connect to old: "+c.want) || !strings.Contains(errOut, "--connect-timeout") {
					t.Fatalf("%s: code %d, stderr %q; want exit 2 with %q naming --connect-timeout", cmd, code, errOut, c.want)
				}
				var e errorJSON
				if err := json.Unmarshal([]byte(out), &e); err != nil || e.Command != cmd || !strings.Contains(e.Error, c.want) || e.ExitStatus != exitError {
					t.Fatalf("%s: stdout %q (%v); want the error as JSON", cmd, out, err)
				}
			}
		})
	}
}

func TestConnectTimeoutFromEnvironment(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env  map[string]string
		want time.Duration
		err  string
	}{
		{nil, connectTimeoutDefault, ""},
		{map[string]string{"PGSHIFT_CONNECT_TIMEOUT": "3"}, 3 * time.Second, ""},
		{map[string]string{"PGSHIFT_CONNECT_TIMEOUT": "250ms", "PGCONNECT_TIMEOUT": "7"}, 250 * time.Millisecond, ""},
		{map[string]string{"PGCONNECT_TIMEOUT": "7"}, 7 * time.Second, ""},
		{map[string]string{"PGSHIFT_CONNECT_TIMEOUT": "0"}, 0, ""},
		{map[string]string{"PGSHIFT_CONNECT_TIMEOUT": "soon"}, connectTimeoutDefault, `PGSHIFT_CONNECT_TIMEOUT="soon": want a duration`},
		{map[string]string{"PGCONNECT_TIMEOUT": "2s"}, connectTimeoutDefault, `PGCONNECT_TIMEOUT="2s"`},
	} {
		got, err := connectTimeoutFromEnv(func(k string) string { return c.env[k] })
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("env %v: %v, %v; want %v, error containing %q", c.env, got, err, c.want, c.err)
		}
	}
}
