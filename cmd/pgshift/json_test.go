package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/pgshift/pgshift/internal/pgtest"
)

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// oneJSONObject decodes stdout as exactly one JSON object.
func oneJSONObject(t *testing.T, what, stdout string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: stdout %q is not a JSON object: %v", what, stdout, err)
	}
	if err := dec.Decode(new(any)); !errors.Is(err, io.EOF) {
		t.Fatalf("%s: stdout %q holds more than one JSON value", what, stdout)
	}
	return v
}

// checkSchema reports keys that are not snake_case and table names that
// are quoted, anywhere in v.
func checkSchema(t *testing.T, what string, v any, path string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			if !snakeCase.MatchString(k) {
				t.Errorf("%s: key %s.%s is not snake_case", what, path, k)
			}
			if s, ok := sub.(string); ok && (k == "table" || k == "sequence") && strings.Contains(s, `"`) {
				t.Errorf("%s: %s.%s = %q is quoted, want schema.name", what, path, k, s)
			}
			checkSchema(t, what, sub, path+"."+k)
		}
	case []any:
		for _, sub := range v {
			checkSchema(t, what, sub, path+"[]")
		}
	}
}

// Every command's --json output, on success and on error, is one JSON
// object with snake_case keys and unquoted schema.table names.
func TestJSONOutputIsOneSchema(t *testing.T) {
	t.Parallel()
	p := setup(t)
	conn := []string{"--old", p.Old.URL, "--new", p.New.URL}
	tables := append([]string{"--schema", "Big Co"}, conn...)
	pgtest.Exec(t, p.New.Pool, `INSERT INTO "Big Co".events VALUES (gen_random_uuid(), 'only on new')`)
	for _, args := range [][]string{
		append([]string{"install"}, conn...),
		append([]string{"backfill", "--table", "Accounts"}, tables...),
		append([]string{"verify", "--recheck", "1ms", "--table", "Accounts", "--table", "events"}, tables...),
		append([]string{"status"}, tables...),
		append([]string{"schema-diff"}, tables...),
		append([]string{"sync-sequences"}, tables...),
		append([]string{"repair"}, conn...),
	} {
		code, out, errOut := pgshift(t, append(args, "--json")...)
		if code == exitError {
			t.Errorf("%s: exit 2: %s", args[0], errOut)
		}
		v := oneJSONObject(t, args[0], out)
		checkSchema(t, args[0], v, "")
		if args[0] == "verify" {
			// The example keys of a difference have the names of its counts.
			tbl := v["tables"].([]any)[1].(map[string]any)
			ex := tbl["examples"].(map[string]any)
			var keys []string
			for k := range ex {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if tbl["table"] != "Big Co.events" || tbl["extra_on_new"] != 1.0 || strings.Join(keys, ",") != "different,extra_on_new,missing_on_new" {
				t.Errorf("verify: table %v, extra_on_new %v, example kinds %v; want Big Co.events, 1 and the counts' names", tbl["table"], tbl["extra_on_new"], keys)
			}
		}
	}
}

// With --json, a command that fails prints its error as a JSON object on
// stdout, and the same line as always on stderr.
func TestJSONErrorOnStdout(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		args := []string{name, "--json"}
		if name == "move" {
			args = append(args, "--flags", "/nonexistent/flags.json", "--keys", "1", "--to", "dualwrite")
		}
		var out, errOut bytes.Buffer
		code := runWith(context.Background(), args, &env{stdout: &out, stderr: &errOut, getenv: noEnv})
		if code != exitError || !strings.HasPrefix(errOut.String(), "pgshift "+name+": ") {
			t.Errorf("%s: code %d, stderr %q; want exit 2 with the error", name, code, errOut.String())
			continue
		}
		v := oneJSONObject(t, name, out.String())
		checkSchema(t, name, v, "")
		msg, _ := v["error"].(string)
		if v["command"] != name || v["exit_status"] != 2.0 || msg == "" || !strings.Contains(errOut.String(), msg) {
			t.Errorf("%s: stdout %v; want command, exit_status 2 and the error of stderr %q", name, v, errOut.String())
		}
	}
}
